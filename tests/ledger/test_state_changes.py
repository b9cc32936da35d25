"""One way to change a trial's state: the ledger operations of ``nnchain.ledger.sweeps``,
each checked against ``states.TRANSITIONS``. Nothing else in nnchain writes the column."""

from __future__ import annotations

import ast
from pathlib import Path

import nnchain
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.states import TRANSITIONS, TRIAL_STATES

# The reaper still kills with its own conditional UPDATE; it should call
# ``ledger_ops.kill_trials`` (then this set is empty).


def state_writes(root: Path) -> set[str]:
    """Files with a call ``update_trial(..., state=...)`` or ``.values(state=...)``."""
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and any(k.arg == "state" for k in node.keywords):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if name in ("update_trial", "values"):
                    found.add(path.relative_to(root).as_posix())
    return found


def test_only_the_ledger_operations_write_trial_states():
    root = Path(nnchain.__file__).parent
    assert state_writes(root) == set()


def test_every_state_has_its_predecessors_from_the_table():
    assert set(TRANSITIONS) == set(TRIAL_STATES)
    for new, olds in ledger_ops.PREDECESSORS.items():
        assert olds == {new} | {old for old in TRIAL_STATES if new in TRANSITIONS[old]}
