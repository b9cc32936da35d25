"""The Ray and MLflow versions nnchain was tested with, and the guard on its private hooks.

nnchain reaches into Ray's start-up (``runner/cluster.py``: patched start-up functions, a
swapped dashboard agent, private ``_system_config`` keys) to start a local instance fast.
Those hooks are used only on the minor version CI tests (``TESTED``) and never with
``NNCHAIN_PLAIN_RAY=1``; otherwise Ray starts through its public options, with the same
results, and one line on stderr says so. (MLflow's tables are written directly only on the
schema revisions the adapter in ``tracking/`` was tested with: that gate checks the
revision, not the package version.)

pyproject.toml holds the ranges users install (``ray[default]>=2.60,<2.61``); ``TESTED`` is
the same fact for run time, and tests/deploy/test_deploy_static.py checks that the two and
the service images' pins agree.
"""

from __future__ import annotations

import os
import sys
import threading

# The minor versions (MAJOR.MINOR) nnchain's private hooks were tested with.
TESTED = {"ray": "2.60", "mlflow": "3.17"}
# Set (to anything but "" or "0"): no private Ray hook, a local Ray starts plainly.
PLAIN_RAY = "NNCHAIN_PLAIN_RAY"

_said: set[str] = set()
_said_lock = threading.Lock()


def installed_version(lib: str) -> str | None:
    """The installed distribution's version (``"2.60.0"``), None if it is not installed.

    Read from the package metadata, so asking does not import Ray or MLflow (and imported
    here, not at the top: the CLI imports this module and needs it only to start Ray).
    """
    from importlib import metadata

    try:
        return metadata.version(lib)
    except metadata.PackageNotFoundError:
        return None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def is_tested(lib: str) -> bool:
    """Whether the installed ``lib`` is the minor version nnchain was tested with."""
    version = installed_version(lib)
    return version is not None and _minor(version) == TESTED[lib]


def plain_ray_requested() -> bool:
    return os.environ.get(PLAIN_RAY, "").strip() not in ("", "0")


def private_hooks_allowed(lib: str) -> bool:
    """The one guard on nnchain's private hooks into ``lib`` ("ray" or "mlflow"): the
    installed version is the tested one and, for Ray, ``NNCHAIN_PLAIN_RAY`` is not set."""
    if lib == "ray" and plain_ray_requested():
        return False
    return is_tested(lib)


def plain_ray_reason() -> str:
    """Why a local Ray starts without nnchain's hooks (when ``private_hooks_allowed("ray")``
    is false): the line ``say_once`` prints."""
    if plain_ray_requested():
        return f"{PLAIN_RAY}={os.environ[PLAIN_RAY]}: starting Ray plainly"
    return (f"Ray {installed_version('ray')} is not a version nnchain's fast start was tested "
            f"with ({TESTED['ray']}); starting Ray plainly")


def say_once(message: str) -> None:
    """Print ``nnchain: MESSAGE`` on stderr, once per process for each message (a fallback
    is worth one line, not one per sweep or per thread)."""
    with _said_lock:
        if message in _said:
            return
        _said.add(message)
    print(f"nnchain: {message}", file=sys.stderr, flush=True)
