"""Early stopping on a real local Ray, read back through MLflow's own client: a Hyperband
sweep end to end, and a driver SIGKILLed mid-bracket then resumed."""

from __future__ import annotations

import json
import signal
from collections import Counter

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from support import store_urls, wait_for
from test_chaos import Cli, LedgerReader, cli_env

from nnchain.cli.main import main
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.states import FINISHED, PRUNED
from nnchain.ledger.store import open_ledger
from nnchain.sweep.pruning import EarlyTerminate, Pruner

pytestmark = pytest.mark.slow

# Hyperband, min_iter 2, eta 3 over 9 epochs: rungs at 2 and 6, brackets dealt
# 0 1 0 2 0 1 0 2 0 (bracket 2 never stops). The good rates come first in each bracket,
# the hopeless ones (lr 1e-5) after them: they meet a better value at their first rung.
EPOCHS = 9
LRS = [0.3, 0.2, 1e-5, 0.1, 2e-5, 0.05, 3e-5, 0.02, 4e-5]


def spec_text(name: str, epochs: int = EPOCHS, lrs=LRS, samples: int = 3000,
              checkpoint_every: int = 0) -> str:
    return f"""
name: {name}
experiment: pruning
seed: 0
metric: {{name: val_cost, goal: minimize}}
early_terminate: {{type: hyperband, min_iter: 2, eta: 3}}
data: {{name: spirals, n_samples: {samples}, noise: 0.1, val_fraction: 0.2}}
model: {{hidden: [32, 32], activation: tanh}}
train: {{epochs: {epochs}, lr: 0.1, batch_size: 16, checkpoint_every: {checkpoint_every},
         track: []}}
parameters:
  train.lr: {{values: [{", ".join(map(str, lrs))}]}}
"""


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def check_pruned_sweep(home, name: str, epochs: int) -> tuple[list, list]:
    """Every trial ended; each PRUNED one agrees with its run, its steps and its stop
    decision; returns the trials and decisions."""
    uri, ledger_url = store_urls(home)
    ledger = open_ledger(ledger_url, create=False)
    try:
        sweep = ledger_ops.find_sweep(ledger, name)
        trials = ledger_ops.trials_of(ledger, sweep.id)
        decisions = ledger_ops.decisions_of(ledger, sweep.id)
    finally:
        ledger.dispose()
    client = MlflowClient(uri)
    keys = [(d.trial_id, d.epoch) for d in decisions]
    assert len(keys) == len(set(keys))  # no decision twice
    stops = {d.trial_id: d for d in decisions if d.stop}
    for trial in trials:
        run = client.get_run(trial.run_id)
        assert run.info.status == FINISHED
        steps = sorted(m.step for m in client.get_metric_history(trial.run_id, "val_cost"))
        if trial.state == PRUNED:
            k = int(run.data.tags["nnchain.pruned_at"])
            assert k == trial.epochs == trial.last_step + 1 < epochs
            assert steps == list(range(k))  # contiguous from 0, each once
            assert k >= stops[trial.id].epoch
        else:  # a stop that came after its last epoch leaves it FINISHED
            assert trial.state == FINISHED and (trial.id not in stops or
                                                trial.epochs == epochs)
            assert "nnchain.pruned_at" not in run.data.tags
            assert steps == list(range(epochs))
        assert "weights.npz" in {a.path for a in client.list_artifacts(trial.run_id)}
    verified = run_cli("sweep", "verify", name)
    assert verified.exit_code == 0, verified.output
    return trials, decisions


def test_a_hyperband_sweep_prunes_hopeless_trials_and_keeps_them_as_results(runs_home,
                                                                            ray_local):
    spec = runs_home / "hb.yaml"
    spec.write_text(spec_text("hb"))
    result = run_cli("sweep", "run", str(spec), "--format", "json", "--quiet",
                     "--max-concurrent", "2", "--pack", "1")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "FINISHED"
    trials, decisions = check_pruned_sweep(runs_home, "hb", EPOCHS)
    pruner = Pruner(EarlyTerminate("hyperband", 2, 3), EPOCHS, "minimize")
    by_index = {t.index: t for t in trials}
    pruned = {t.index for t in trials if t.state == PRUNED}
    assert pruned and pruned <= {2, 4, 6, 8, 5}  # never a good rate, never bracket 2
    assert all(by_index[i].state == FINISHED for i in (0, 1, 3, 7))
    for decision in decisions:  # each made at a rung of its trial's bracket
        index = next(t.index for t in trials if t.id == decision.trial_id)
        assert decision.epoch in pruner.decision_epochs(index)
        assert decision.bracket == pruner.bracket(index)
    # a stop is seen within one epoch of the decision (the driver answering at once)
    late = [t.epochs - next(d.epoch for d in decisions if d.trial_id == t.id and d.stop)
            for t in trials if t.state == PRUNED]
    assert max(late) <= 1, late
    assert out["counts"] == dict(Counter(t.state for t in trials))

    status = run_cli("sweep", "status", "hb", "--decisions", "--format", "json")
    info = json.loads(status.stdout)
    assert info["counts"][PRUNED] == len(pruned) and info["done"] == len(LRS)
    assert [(row["index"], row["epoch"], row["stop"]) for row in info["decisions"]] == \
        [(by_index_of(trials, d.trial_id), d.epoch, bool(d.stop)) for d in decisions]
    table = run_cli("sweep", "status", "hb", "--decisions")
    assert "early-stopping decisions on val_cost" in table.stdout and "stop" in table.stdout

    compared = json.loads(run_cli("compare", "hb", "--format", "json").stdout)
    states = [row["state"] for row in compared]
    assert states == sorted(states, key=lambda s: s == PRUNED)  # pruned after finished
    assert PRUNED in states


def by_index_of(trials, trial_id: int) -> int:
    return next(t.index for t in trials if t.id == trial_id)


def test_a_driver_killed_mid_bracket_resumes_with_its_decisions_kept(runs_home, ray_local):
    epochs, lrs = 40, [0.3, 0.2, 1e-5, 0.1, 2e-5, 0.05, 3e-5, 0.02, 4e-5, 0.15]
    spec = runs_home / "kill.yaml"
    spec.write_text(spec_text("hb-kill", epochs=epochs, lrs=lrs, samples=1500,
                              checkpoint_every=5))
    # the driver in its own process with its own local Ray (killed with it); the resume
    # runs here, on the session's Ray
    driver = Cli(runs_home, ["sweep", "run", str(spec), "--quiet", "--max-concurrent", "2",
                             "--pack", "1"], cli_env(None))
    reader = LedgerReader(store_urls(runs_home)[1])
    try:
        def some_decided():
            sweep = reader.sweep("hb-kill")
            return sweep is not None and len(ledger_ops.decisions_of(reader._ledger,
                                                                     sweep.id)) >= 4
        wait_for(some_decided, timeout=120)
        driver.kill()
        assert driver.process.returncode == -signal.SIGKILL
        sweep = reader.sweep("hb-kill")
        before = [(d.id, d.trial_id, d.epoch, d.value, d.cutoff, d.stop)
                  for d in ledger_ops.decisions_of(reader._ledger, sweep.id)]
        unfinished = [t for t in reader.trials("hb-kill") if t.state not in (FINISHED, PRUNED)]
        assert unfinished  # killed mid-sweep
    finally:
        reader.close()
    resumed = run_cli("sweep", "resume", "hb-kill", "--quiet", "--format", "json",
                      "--max-concurrent", "2")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["status"] == "FINISHED"
    trials, decisions = check_pruned_sweep(runs_home, "hb-kill", epochs)
    after = [(d.id, d.trial_id, d.epoch, d.value, d.cutoff, d.stop) for d in decisions]
    assert after[:len(before)] == before  # recorded decisions kept, never re-decided
    stopped = {d.trial_id for d in decisions if d.stop}
    assert {t.id for t in trials if t.state == PRUNED} <= stopped


def test_a_bayes_sweep_with_asha_runs_from_the_cli(runs_home, ray_local):
    spec = runs_home / "tpe.yaml"
    spec.write_text("""
name: tpe
experiment: pruning
seed: 0
method: bayes
run_cap: 6
metric: {name: val_cost, goal: minimize}
early_terminate: {type: asha, min_iter: 2, eta: 2}
data: {name: xor, n_samples: 60, noise: 0.05, val_fraction: 0.25}
model: {hidden: [4], activation: tanh}
train: {epochs: 6, track: []}
parameters:
  train.lr: {distribution: log_uniform, min: 0.0001, max: 1.0}
  model.hidden: {values: [[2], [4]]}
""")
    result = run_cli("sweep", "run", str(spec), "--format", "json", "--quiet",
                     "--max-concurrent", "1")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "FINISHED" and out["trials"] == 6
    trials, _ = check_pruned_sweep(runs_home, "tpe", 6)
    assert len(trials) == 6 and [t.index for t in trials] == list(range(6))
    again = run_cli("sweep", "resume", "tpe", "--format", "json", "--quiet")
    assert again.exit_code == 0 and json.loads(again.stdout)["trials"] == 6
