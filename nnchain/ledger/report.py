"""What ``sweep status`` and ``sweep list`` show, read from the ledger in a few queries."""

from __future__ import annotations

import math
import sys

from sqlalchemy import select

from nnchain.errors import SpecError
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import ENDED, FAILED, FINISHED, TRIAL_STATES, Sweep, Trial
from nnchain.ledger.store import Ledger


def newest_sweep(ledger: Ledger) -> Sweep:
    with ledger.session() as session:
        sweep = session.scalar(select(Sweep).order_by(Sweep.created_at.desc()).limit(1))
    if sweep is None:
        raise SpecError("SWEEP", "must name a sweep, and this ledger has none yet")
    return sweep


def best_trial(ledger: Ledger, sweep: Sweep) -> Trial | None:
    """The FINISHED trial with the best finite metric (never a failed or diverged one).

    Found by one ranked row in SQL (infinities and PostgreSQL's NaN outside the range;
    SQLite keeps NaN as NULL), then that trial loaded: loading every trial as an object
    would cost ``sweep status`` more than everything else it does."""
    order = Trial.metric.asc() if sweep.metric_goal == "minimize" else Trial.metric.desc()
    finite = Trial.metric.between(-sys.float_info.max, sys.float_info.max)
    with ledger.session() as session:
        best = session.execute(select(Trial.id, Trial.metric).where(
            Trial.sweep_id == sweep.id, Trial.state == FINISHED, Trial.metric.is_not(None),
            finite).order_by(order, Trial.id).limit(1)).first()
        if best is None or not math.isfinite(best.metric):
            return None
        return session.get(Trial, best.id)


def sweep_status(ledger: Ledger, ref: str | None) -> dict:
    sweep = ledger_ops.find_sweep(ledger, ref) if ref else newest_sweep(ledger)
    counts = ledger_ops.state_counts(ledger, sweep.id)
    best = best_trial(ledger, sweep)
    done = sum(counts[s] for s in ENDED)
    return {"id": sweep.id, "name": sweep.name, "status": sweep.status,
            "experiment": sweep.experiment, "experiment_id": sweep.experiment_id,
            "parent_run_id": sweep.parent_run_id, "total": sweep.trial_count, "done": done,
            "counts": {state: counts.get(state, 0) for state in TRIAL_STATES},
            "metric": sweep.metric_name, "goal": sweep.metric_goal,
            "best": None if best is None else best.metric,
            "best_key": None if best is None else best.key,
            "best_run_id": None if best is None else best.run_id,
            "created": sweep.created_at, "heartbeat": sweep.heartbeat_at}


def sweep_rows(ledger: Ledger) -> list[dict]:
    return [{"name": s.name, "id": s.id, "status": s.status, "experiment": s.experiment,
             "trials": s.trial_count, "finished": counts.get(FINISHED, 0),
             "failed": counts.get(FAILED, 0), "created": s.created_at}
            for s, counts in ledger_ops.list_sweeps(ledger)]
