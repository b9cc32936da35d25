"""Connecting to Ray: join the cluster the user names, or start a local one on demand.

A local start uses private Ray hooks (``_lean_start``, ``PRIVATE_SYSTEM_CONFIG``) that cut
its waits; all of them sit behind one guard, ``versions.private_hooks_allowed("ray")``: the
tested Ray and no ``NNCHAIN_PLAIN_RAY``. Otherwise Ray starts through its public options
only, with the same results, and one line on stderr says so.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlsplit

from nnchain import versions
from nnchain.errors import NnchainError, SpecError

# Imported by a local Ray's workers before they take work (see its docstring).
PRELOAD = "nnchain.runner.preload"
# A local raylet connects to its own object store as the store starts; a connection
# that loses that race is retried after Ray's 1 s (8 of 24 starts here, none with this).
# Retried every 0.1 s instead, for the same 10 s in all.
FAST_RETRY = {"raylet_client_connect_timeout_milliseconds": 100,
              "raylet_client_num_connect_attempts": 100}
# Private ``_system_config`` keys (an unknown key is fatal to Ray): only on the tested Ray.
PRIVATE_SYSTEM_CONFIG = {"preload_python_modules": [PRELOAD], **FAST_RETRY}


class RayStartError(NnchainError):
    """A local Ray instance did not start: not the user's input, this machine's Ray.

    The CLI prints it as one line and exits 1.
    """


def _reachable(address: str, timeout: float = 3.0) -> bool:
    """Whether host:port of a Ray address accepts a TCP connection."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.hostname is None or parts.port is None:
        return True  # not host:port ("auto", "local"): let Ray decide
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            return True
    except OSError:
        return False


def check_address(address: str | None) -> None:
    """Refuse an address (option or ``RAY_ADDRESS``) where nothing answers."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and not _reachable(address):
        raise SpecError("--address", f"must reach a running Ray cluster, nothing answers at "
                                     f"{address!r}")


def _loopback_address(address: str) -> bool:
    """Whether a Ray address names this host's loopback (a local Ray nnchain started)."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    return parts.scheme == "tcp" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def connect(address: str | None = None, *, num_cpus: int | None = None) -> dict:
    """``ray.init`` on ``address`` (or ``RAY_ADDRESS``), else a local instance without dashboard.

    Returns the cluster's resources. An address that cannot be reached is refused as bad
    input (``SpecError``), before anything is written; a local instance that does not
    start raises ``RayStartError`` with Ray's first line.
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return ray.cluster_resources()
    check_address(address)
    # No runtime_env: workers never use MLflow, and one would make Ray start new workers
    # for it instead of those it prestarted (measured: first tasks 0.9 s later instead of 0.3).
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    logging.getLogger("ray").setLevel(logging.ERROR)
    if not address:
        _start_local(num_cpus, quiet)
        return ray.cluster_resources()
    # A driver joining a loopback-only local Ray must itself be a loopback node: else Ray
    # swaps 127.0.0.1 for the host's address, where nothing of that Ray listens.
    joining = _loopback_node() if _loopback_address(address) else nullcontext()
    try:
        with joining:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SpecError("--address", f"must reach a running Ray cluster, could not connect to "
                                     f"{address!r}: {_first_line(exc)}") from None
    return ray.cluster_resources()


def fast_start() -> bool:
    """The one guard on every private Ray hook of a local start."""
    return versions.private_hooks_allowed("ray")


def _start_local(num_cpus: int | None, quiet: dict) -> None:
    """A local instance: nnchain's fast start where its hooks are allowed, else Ray's own
    start with public options only (said once on stderr)."""
    import ray

    private_token_file()
    try:
        if fast_start():
            with _loopback_node(), _lean_start():
                ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet,
                         _system_config=PRIVATE_SYSTEM_CONFIG)
        else:
            versions.say_once(versions.plain_ray_reason())
            with _loopback_node():
                ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)
    except Exception as exc:  # noqa: BLE001 - whatever Ray raised, told as one line
        if ray.is_initialized():
            ray.shutdown()
        raise RayStartError(f"could not start a local Ray: {_first_line(exc)}") from None


def private_token_file(home: Path | None = None) -> Path | None:
    """Ray's default token file (``~/.ray/auth_token``) readable by its owner only.

    A local ``ray.init`` with token authentication (Ray's default) writes a new token
    there with the umask's mode (0644): made here first instead, 0600 in a 0700 folder
    when nnchain makes the folder, in Ray's form (64 hex digits); an existing one of this
    user's is narrowed to 0600. Nothing is done when ``RAY_AUTH_TOKEN`` or
    ``RAY_AUTH_TOKEN_PATH`` name the token, or token authentication is off.
    """
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
            os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return None
    import secrets
    import stat

    path = (home or Path.home()) / ".ray" / "auth_token"
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        found = os.lstat(path) if os.path.lexists(path) else None
        if found is None:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
        elif stat.S_ISREG(found.st_mode) and found.st_uid == os.getuid() and \
                stat.S_IMODE(found.st_mode) & 0o077:
            os.chmod(path, 0o600)
    except FileExistsError:  # another sweep made it meanwhile
        pass
    except OSError:  # a read-only home: Ray says what it cannot do
        return None
    return path


@contextmanager
def _loopback_node() -> Iterator[None]:
    """A local Ray private to one sweep, its node on 127.0.0.1: Ray binds its servers (GCS,
    raylet, object manager, workers' gRPC, the agents) to the node's address, so all of them
    listen on the loopback only (measured with ``ss -ltnp``: tests/security).

    ``ray.init(_node_ip_address="127.0.0.1")`` is no way: Ray replaces a loopback address by
    the host's reachable one, except where its ``ENABLE_RAY_CLUSTER`` constant is off (its
    single-machine mode on macOS and Windows), which is set off for the start. A security
    setting, not a speed hack: it does not follow ``NNCHAIN_PLAIN_RAY``, only the tested
    Ray version; with another, Ray listens on the host's address (token auth still on),
    said once.
    """
    if not versions.is_tested("ray"):
        versions.say_once(f"Ray {versions.installed_version('ray')} is not a version nnchain "
                          f"tested its loopback-only local start with; Ray's agents listen "
                          f"on this host's address")
        yield
        return
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@contextmanager
def _lean_start() -> Iterator[None]:
    """Cut Ray's waits and idle processes from a local start (benchmarks/README.md).

    - No API server: with ``include_dashboard=False`` Ray still starts one, a Python process
      that imports its dashboard modules to serve usage stats, and waits for it before it
      starts the raylet. Nothing uses it on an instance private to one sweep (Ray's dashboard
      agent logs, to its own log, that it cannot find it: once a second, harmless).
    - No autoscaler monitor and no log monitor: two more Python processes whose imports
      share the two cores with the raylet's agents while Ray starts (~0.4 s of the start
      here). A local instance has a fixed size, and its workers' output is not sent to the
      driver (``log_to_driver=False``), which is all the log monitor does.
    - A minimal dashboard agent: before it starts the raylet, Ray imports the dashboard's
      optional dependencies (aiohttp, OpenCensus, Prometheus: ~0.35 s of the driver's CPU
      here) only to decide whether the agent may serve HTTP; the raylet then waits for that
      agent to load its modules. Without an API server nothing asks the agent for HTTP, so
      it starts minimal (no HTTP server, no node metrics) and sooner.
    - No dashboard modules in the agent: the raylet waits for its agent before it
      registers the node, and the stock agent first imports every dashboard module
      package to find its modules, none of which a private instance uses. The raylet
      runs ``nnchain/runner/ray_agent.py`` instead (``cluster.connect`` 1.19 s against
      1.53 s here).
    - Ray asks the GCS whether the raylet has registered at +0.1 s and then once a second;
      a poll every 20 ms notices it when it happens.

    All are Ray's private hooks, used only where ``fast_start()`` allows them; a tested Ray
    that lacks one (a patched build) starts as it always does, said once on stderr.
    """
    try:
        from ray._private import node, services, utils
        ray_get_node = services.get_node

        def get_node(gcs_address, node_id, *args, **kwargs):
            _wait_registered(gcs_address, node_id)
            return ray_get_node(gcs_address, node_id, *args, **kwargs)

        hooks = [(node.Node, name, lambda self, *args, **kwargs: None)
                 for name in ("start_api_server", "start_monitor", "start_log_monitor")]
        ray_start_process, raylet = (services.start_ray_process,
                                     services.ray_constants.PROCESS_TYPE_RAYLET)

        def start_ray_process(command, process_type, *args, **kwargs):
            if process_type == raylet:
                command = _with_our_agent(command)
            return ray_start_process(command, process_type, *args, **kwargs)

        hooks += [(utils, "get_dashboard_dependency_error",
                   lambda: ImportError("a minimal agent: nnchain's instance has no API server")),
                  (services, "get_node", get_node),
                  (services, "start_ray_process", start_ray_process)]
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in hooks]
    except (ImportError, AttributeError) as exc:
        versions.say_once(f"Ray {versions.installed_version('ray')} lacks a start-up hook of "
                          f"nnchain's fast start ({exc}); its start-up is Ray's own")
        yield
        return

    for owner, name, replacement in hooks:
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def _with_our_agent(command: list[str]) -> list[str]:
    """The raylet's command, its dashboard agent's command running nnchain's agent script
    in place of Ray's (as it is if either path has a space, which the command quotes)."""
    import ray.dashboard

    ray_agent = str(Path(ray.dashboard.__file__).with_name("agent.py"))
    ours = str(Path(__file__).with_name("ray_agent.py"))
    if " " in ray_agent + ours:
        return command
    return [part.replace(f" {ray_agent} ", f" {ours} ", 1)
            if part.startswith("--dashboard_agent_command=") else part for part in command]


def _wait_registered(gcs_address: str, node_id: str, timeout: float = 10.0) -> None:
    """Return once the GCS lists ``node_id`` alive, or at ``timeout``."""
    try:
        from ray._raylet import GcsClient
        from ray.core.generated.gcs_pb2 import GcsNodeInfo

        client = GcsClient(address=gcs_address)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = client.get_all_node_info(timeout=5,
                                             state_filter=GcsNodeInfo.GcsNodeState.ALIVE)
            if node_id in {found.hex() for found in alive}:
                return
            time.sleep(0.02)
    except Exception:  # noqa: BLE001 - any failure here leaves the wait to Ray's own loop
        return


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
