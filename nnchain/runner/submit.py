"""``nnchain sweep submit``: the sweep driver sent to a Ray cluster as a Ray job.

``sweep run`` drives a sweep from the machine it runs on; closing that machine stops
the sweep. ``submit`` instead hands the driver to the cluster's job API
(``ray.job_submission``): the head node runs ``python -m nnchain sweep run`` and the
submitting machine may go away.

What travels, and how:

- the spec file, shipped as the job's ``runtime_env`` working directory (a temp dir with
  ``sweep.yaml``, plus any data file the spec names by a relative path), so the cluster
  needs no copy of the user's files; ``--set`` overrides go on the command line, as they
  would locally, so that the ledger records them the same way;
- ``--tracking-uri`` / ``--ledger-url``, when given, as the job's environment variables
  (``MLFLOW_TRACKING_URI`` / ``NNCHAIN_LEDGER_URL``), never in the entrypoint string.
  Without them the driver uses the cluster's own variables: the submitting machine's
  name the stores as *it* reaches them (``127.0.0.1:5000`` through a tunnel), which is
  rarely how the head node reaches them, so they are not forwarded.

Credentials stay on the cluster by default. Ray writes a job's ``runtime_env``,
environment variables included, into every node's ``runtime_env_agent.log`` and shows
it in the dashboard and ``ray job list``; a password sent that way is no longer secret.
So the head node holds the driver's credentials itself (``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` and a password-less ledger URL with ``PGPASSFILE``, from
secret files: see ``docs/deploy.md``), a URI with a password is refused, and only
``forward_credentials`` (``--forward-credentials``) sends this machine's
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` / ``MLFLOW_TRACKING_TOKEN``
and such URIs as job environment variables, with that warning. Either way no secret is
ever in the entrypoint string, and whatever this module prints is masked.

The sweep's id is chosen here (``ledger.sweeps.new_sweep_id``) and passed to the driver
(``sweep run --sweep-id``), so ``submit`` reports it at once, before the cluster has even
started the driver, and ``nnchain sweep status|compare|cancel ID`` address that sweep
whatever its name: ``sweep run`` appends ``-2``, ``-3`` when the requested name is taken,
and the final name is known from the driver's JSON result once the job has ended.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nnchain.credentials import has_secret, scrub, scrub_text, secrets_of, split_http_credentials
from nnchain.errors import SpecError
from nnchain.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ExitCode
from nnchain.ledger.sweeps import new_sweep_id
from nnchain.limits import DEFAULT_MAX_TRIALS, check_max_trials
from nnchain.tracking.direct import STORE_ENV
from nnchain.tracking.store import check_name

SPEC_FILE = "sweep.yaml"
# Variables with credentials that follow the sweep from the submitting machine.
FORWARDED_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
SECRET_ENV = (*FORWARDED_ENV[1:], "PGPASSWORD", "RAY_AUTH_TOKEN")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# Ray's refusal while the head's job agent is not up yet; it is tried again this long.
NO_AGENT = "No available agent to submit job"
AGENT_WAIT_SECONDS = 120.0


@dataclass
class SubmitOptions:
    address: str | None = None  # the job API, http://HEAD:8265 (else RAY_API_SERVER_ADDRESS)
    tracking_uri: str | None = None  # as the cluster reaches it; None: the cluster's own
    ledger_url: str | None = None  # as the cluster reaches it; None: the cluster's own
    name: str | None = None
    max_trials: int = DEFAULT_MAX_TRIALS
    max_concurrent: int | None = None
    cpus_per_trial: int = 1
    pack: int | None = None
    forward_credentials: bool = False  # send this machine's credentials as job env vars
    env: Mapping[str, str] | None = None  # the submitting environment (default os.environ)


@dataclass
class Submission:
    """A sweep handed to a cluster: the Ray job and the id its sweep gets."""

    job_id: str
    address: str
    sweep_id: str  # chosen here, passed to the driver
    requested_name: str
    trials: int
    name: str | None = None  # the ledger's final name, from the driver's result once it ended
    job_status: str = "PENDING"
    exit_code: int | None = None
    result: dict | None = None  # `sweep run --format json` output, once the job ended
    secrets: tuple[str, ...] = field(default=(), repr=False)
    client: object = field(default=None, repr=False, compare=False)  # the JobSubmissionClient

    def as_dict(self) -> dict:
        return {"job_id": self.job_id, "address": self.address,
                "name": self.name or self.requested_name, "name_final": self.name is not None,
                "sweep_id": self.sweep_id, "trials": self.trials, "job_status": self.job_status,
                "exit_code": self.exit_code, "result": self.result}


def resolve_address(address: str | None, env: Mapping[str, str]) -> str:
    """The job API address: the option, then Ray's ``RAY_API_SERVER_ADDRESS``, ``RAY_ADDRESS``."""
    address = address or env.get("RAY_API_SERVER_ADDRESS") or env.get("RAY_ADDRESS") or ""
    if not address:
        raise SpecError("--address", "must name the cluster's job API (http://HEAD:8265), "
                                     "got nothing (nor RAY_API_SERVER_ADDRESS, RAY_ADDRESS)")
    if "://" not in address:
        raise SpecError("--address", f"must be the job API's URL (http://HEAD:8265), got "
                                     f"{scrub(address)!r}")
    return address


def secret_values(options: SubmitOptions, env: Mapping[str, str]) -> tuple[str, ...]:
    """Every secret this submission knows of, to be masked in anything it prints."""
    values = [env.get(name, "") for name in SECRET_ENV]
    for uri in (options.tracking_uri, options.ledger_url, options.address):
        if uri:
            values.extend(secrets_of(uri))
    return tuple(sorted({v for v in values if len(v) >= 3}, key=len, reverse=True))


def mask(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every known secret value and every URI's credentials masked."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return scrub_text(text)


def prepare_working_dir(spec_path: str, data_paths: Iterable[str]) -> tuple[Path, list[str]]:
    """A temp dir with the spec and the relative data files; notes for absolute ones.
    ``data_paths``: the files the trials read, as the spec writes them (expansion resolves
    them against this directory; the cluster resolves them against the job's)."""
    notes: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="nnchain-submit-"))
    try:
        shutil.copyfile(spec_path, directory / SPEC_FILE)
        for path in sorted(data_paths):
            source = Path(path)
            if source.is_absolute() or path.startswith("~"):
                notes.append(f"data file {path} is not shipped: it must exist at that path on "
                             "the cluster's head node")
                continue
            if ".." in source.parts:
                raise SpecError("data.path", f"must stay below the working directory to be "
                                             f"shipped with the job, got {path!r}")
            if not source.is_file():
                raise SpecError("data.path", f"must be a readable file to ship with the job, "
                                             f"{path!r} is not")
            (directory / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, directory / source)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory, notes


def build_entrypoint(name: str, sweep_id: str, overrides: Sequence[str],
                     options: SubmitOptions) -> str:
    """The job's shell command: ``sweep run`` on the shipped spec, no URI or secret in it."""
    words = ["python", "-m", "nnchain", "sweep", "run", SPEC_FILE, "--quiet", "--format", "json",
             "--name", name, "--sweep-id", sweep_id, "--max-trials", str(options.max_trials),
             "--cpus-per-trial", str(options.cpus_per_trial)]
    for item in overrides:
        words += ["--set", item]
    if options.max_concurrent:
        words += ["--max-concurrent", str(options.max_concurrent)]
    if options.pack:
        words += ["--pack", str(options.pack)]
    return shlex.join(words)


FORWARD_WARNING = ("--forward-credentials: Ray records the job's environment, these "
                   "credentials included, in its dashboard and in each node's "
                   "runtime_env_agent.log")


def job_env(options: SubmitOptions, env: Mapping[str, str]) -> dict[str, str]:
    """The job's environment variables: the stores as the cluster reaches them and, with
    ``forward_credentials`` only, this machine's MLflow credentials. A ``--tracking-uri``
    turns off the cluster's ``NNCHAIN_TRACKING_STORE_URL``, the database of the cluster's
    own tracking server.

    A URI embedding a password is refused without ``forward_credentials`` (see the
    module docstring: Ray logs a job's environment).

    ``MLFLOW_DISABLE_TELEMETRY`` is left to the cluster's environment: the driver's
    ``ray.init`` sets it in its own runtime env, and Ray refuses a job whose runtime env
    sets the same variable.
    """
    values = {"PYTHONUNBUFFERED": "1"}
    for option, variable, uri in (("--tracking-uri", "MLFLOW_TRACKING_URI", options.tracking_uri),
                                  ("--ledger-url", "NNCHAIN_LEDGER_URL", options.ledger_url)):
        if not uri:
            continue
        if has_secret(uri) and not options.forward_credentials:
            raise SpecError(option, f"must not hold a password ({scrub(uri)}): Ray records a "
                                    f"job's environment in its logs and dashboard; keep the "
                                    f"credentials on the cluster (docs/deploy.md) or pass "
                                    f"--forward-credentials")
        values[variable] = uri
    if options.tracking_uri:  # the cluster's database behind its own server is not this one's
        values[STORE_ENV] = ""
    if options.forward_credentials:
        values.update({name: env[name] for name in FORWARDED_ENV if env.get(name)})
        # a tracking server's user and password travel as MLflow's variables, not in a URI
        clean, user, password = split_http_credentials(values.get("MLFLOW_TRACKING_URI", ""))
        if user is not None or password is not None:
            values["MLFLOW_TRACKING_URI"] = clean
            values.update({name: value for name, value in (("MLFLOW_TRACKING_USERNAME", user),
                           ("MLFLOW_TRACKING_PASSWORD", password)) if value is not None})
    return values


@contextmanager
def _explicit_address() -> Iterator[None]:
    """Ray lets ``RAY_ADDRESS`` override the address a client is given; the option wins here."""
    saved = {k: os.environ.pop(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
             if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def job_client(address: str):
    """A ``JobSubmissionClient`` on ``address``; an unreachable or refusing API is bad input."""
    from ray.job_submission import JobSubmissionClient

    try:
        with _explicit_address():
            return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, RuntimeError, AuthenticationError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "auth" in first.lower() or "401" in first or "403" in first:
            hint = "; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH)"
        raise SpecError("--address", f"must reach a Ray cluster's job API, "
                                     f"{scrub(address)!r} answered: {first[:300]}{hint}"
                        ) from None


def submit_sweep(spec_path: str, overrides: Sequence[str], options: SubmitOptions,
                 on_log: Callable[[str], None] | None = None) -> Submission:
    """Validate the spec here, submit its driver as a Ray job with the sweep's id chosen here.

    Bad input (spec, overrides, names, data files, an unreachable job API) raises
    ``SpecError`` before anything is submitted.
    """
    from nnchain.sweep import load_sweep_spec, survey

    env = os.environ if options.env is None else options.env
    check_max_trials(options.max_trials)
    spec = load_sweep_spec(spec_path, overrides)
    name = check_name("--name" if options.name else "name", options.name or spec.name)
    check_name("experiment", spec.experiment)
    found = survey(spec, max_trials=options.max_trials)  # every cell checked, configs not kept
    address = resolve_address(options.address, env)
    secrets = secret_values(options, env)
    variables = job_env(options, env)
    client = job_client(address)
    if options.forward_credentials:
        _say(on_log, FORWARD_WARNING)
    working_dir, notes = prepare_working_dir(spec_path, found.data_paths)
    for note in notes:
        _say(on_log, note)
    job_id = f"nnchain-{uuid.uuid4().hex[:12]}"
    sweep_id = new_sweep_id()
    try:
        _submit_when_an_agent_answers(
            client, entrypoint=build_entrypoint(name, sweep_id, overrides, options),
            submission_id=job_id,
            runtime_env={"working_dir": str(working_dir), "env_vars": variables},
            metadata={"nnchain.sweep": name, "nnchain.sweep_id": sweep_id,
                      "nnchain.experiment": spec.experiment,
                      "nnchain.trials": str(found.count)})
    except Exception as exc:
        text = mask(str(exc).strip().splitlines()[0] if str(exc).strip() else
                    type(exc).__name__, secrets)
        raise SpecError("--address", f"must accept the job, {scrub(address)!r} refused it: "
                                     f"{text[:300]}") from None
    finally:
        shutil.rmtree(working_dir, ignore_errors=True)
    submission = Submission(job_id=job_id, address=scrub(address), sweep_id=sweep_id,
                            requested_name=name, trials=found.count, secrets=secrets,
                            client=client)
    logs = _refresh(submission)
    if submission.job_status in TERMINAL and submission.job_status != "SUCCEEDED":
        tail = [line for line in logs.strip().splitlines() if line.strip()][-1:]
        _say(on_log, f"job {job_id} ended {submission.job_status}"
                     + (f": {tail[0][:500]}" if tail else ""))
    return submission


def _submit_when_an_agent_answers(client, **job) -> None:
    """``client.submit_job``, tried again while the head says it has no job agent yet.

    A cluster just started registers the head's agent some seconds after its job API
    answers (later on a loaded machine); Ray refuses a job meanwhile, before it makes
    anything, and says to try again later.
    """
    deadline, retried = time.monotonic() + AGENT_WAIT_SECONDS, False
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as exc:
            if retried and "already exists" in str(exc):
                return  # the agent timed out after it made the job: it is there
            if NO_AGENT not in str(exc) or time.monotonic() >= deadline:
                raise
        retried = True
        time.sleep(1.0)


def _say(on_log: Callable[[str], None] | None, line: str) -> None:
    if on_log is not None:
        on_log(line)


def _refresh(submission: Submission) -> str:
    """The job's log so far (masked); updates status, exit code and, once the job ended,
    the driver's result and the sweep's final name."""
    client = submission.client
    info = client.get_job_info(submission.job_id)
    submission.job_status = str(getattr(info.status, "value", info.status))
    submission.exit_code = getattr(info, "driver_exit_code", None)
    logs = mask(client.get_job_logs(submission.job_id), submission.secrets)
    if submission.job_status in TERMINAL:
        submission.result = last_json(logs)
        if submission.result and submission.result["sweep_id"] == submission.sweep_id:
            submission.name = submission.result.get("name")
    return logs


def last_json(logs: str) -> dict | None:
    """The last line of ``logs`` that is ``sweep run``'s JSON result."""
    for line in reversed(logs.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and "sweep_id" in value:
                return value
    return None


def follow(submission: Submission, on_log: Callable[[str], None] | None = None,
           poll: float = 1.0) -> Submission:
    """Stream the job's log (masked) until it ends; the job goes on if this is interrupted."""
    shown = 0
    while True:
        logs = _refresh(submission)
        if len(logs) > shown:
            for line in logs[shown:].splitlines():
                _say(on_log, line)
            shown = len(logs)
        if submission.job_status in TERMINAL:
            return submission
        time.sleep(poll)


def exit_code(submission: Submission) -> ExitCode:
    """The command's exit code once the job ended: the driver's own where it is ours."""
    if submission.job_status == "SUCCEEDED":
        return EXIT_OK
    if submission.exit_code in (EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED):
        return ExitCode(submission.exit_code)
    return EXIT_FAILED
