"""Helpers of the deployment tests: the repo's files, process trees, the CLI."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "services"
COMPOSE = REPO / "docker-compose.yml"
MLFLOW_ENTRYPOINT = SERVICES / "mlflow" / "entrypoint.py"
POSTGRES_INIT = SERVICES / "postgres" / "init.sh"
BIN = Path(sys.executable).parent  # the venv's `ray`, `python`

# `nnchain` with `sweep submit` registered even before nnchain/cli/sweep.py does it.
RUN_NNCHAIN = """
import sys
from nnchain.cli.main import main
from nnchain.cli.sweep import sweep
from nnchain.cli.submit import submit
if "submit" not in sweep.commands:
    sweep.add_command(submit)
sys.exit(main())
"""


def nnchain_command(*args: str) -> list[str]:
    return [sys.executable, "-c", RUN_NNCHAIN, *args]


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def process_tree(group_ids: set[int]) -> set[int]:
    """Every process of the given process groups, and all their descendants."""
    table = _proc_table()
    found = {pid for pid, (_, pgid) in table.items() if pgid in group_ids}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found - {os.getpid()}


def kill_tree(group_ids: set[int]) -> None:
    """SIGKILL the processes this test started: its process groups and their descendants."""
    for pid in process_tree(group_ids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
