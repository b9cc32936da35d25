"""Who a driver is (host, pid, process start) and whether that process still runs.

A sweep's ledger row names its driver by this identity. On the driver's own host the
reaper asks the kernel: no such pid, a zombie, or a pid now held by a process that started
at another time (reused) means the driver is gone, and its sweep is reaped at once. From
anywhere else nothing can be checked, and the heartbeat grace decides.

The start time is the kernel's, in seconds after the host booted (``/proc/<pid>/stat``
field 22): unlike a wall-clock time it does not move when the clock is set, so a live
driver is never mistaken for a reused pid. ``space`` (boot id and pid namespace) says
where a pid means this process: a reboot, or a container sharing the host name but not
its pids, makes the identity one that cannot be checked rather than one that looks dead.
Without ``/proc`` (not Linux) nothing is checked; the grace decides everywhere.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_DEAD_STATES = ("Z", "X")  # a zombie (killed, not yet waited for) or being removed

# The heartbeat grace, for drivers that cannot be checked from here (see ``reaper``); it
# lives in this light module so that the CLI can show it without importing SQLAlchemy.
DEFAULT_GRACE_SECONDS = 60.0
GRACE_ENV = "NNCHAIN_GRACE_SECONDS"


@dataclass(frozen=True)
class ProcessIdentity:
    host: str
    pid: int
    started: float | None  # seconds after the host booted; None: unknown
    space: str = ""  # boot id and pid namespace; "": unknown

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}"


def grace_seconds(value: float | None = None) -> float:
    """The grace period: the option, else ``NNCHAIN_GRACE_SECONDS``, else 60 s."""
    if value is not None:
        return value
    return float(os.environ.get(GRACE_ENV, DEFAULT_GRACE_SECONDS))


def _stat(pid: int, proc: Path = PROC) -> tuple[str, float] | None:
    """(state, start in seconds after boot) of ``pid``, None when unreadable."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # field 2, the command name, may hold spaces and ')': fields 3.. follow the last ')'
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _space(proc: Path = PROC) -> str:
    try:
        boot_id = (proc / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(proc / "self/ns/pid")
    except OSError:
        return ""
    return f"{boot_id}/{namespace}"


def current() -> ProcessIdentity:
    """This process's identity (computed each call: a forked child is another process)."""
    return of_pid(os.getpid())


def of_pid(pid: int) -> ProcessIdentity:
    """The identity of the process ``pid`` of this host (start None when unreadable)."""
    stat = _stat(pid)
    return ProcessIdentity(socket.gethostname(), pid, stat[1] if stat else None, _space())


def process_alive(identity: ProcessIdentity) -> bool | None:
    """Whether the process ``identity`` names runs: True checked here, False gone (no such
    pid, a zombie, or the pid reused), None when it cannot be checked from here (another
    host or pid namespace, an unknown start time): then the heartbeat grace decides."""
    here = current()
    if (identity.host != here.host or not identity.space or identity.space != here.space
            or identity.started is None or identity.pid <= 0):
        return None
    try:
        os.kill(identity.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists, its start time tells whose it is
    stat = _stat(identity.pid)
    if stat is None:  # gone since the kill, or /proc hides it
        return False if _gone(identity.pid) else None
    state, started = stat
    if state in _DEAD_STATES:
        return False
    tick = 1 / os.sysconf("SC_CLK_TCK")
    return abs(started - identity.started) < tick / 2


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
