"""Benchmark: ``nnchain compare`` on a 1,000-trial sweep beside MLflow over the same runs.

Builds, in a temp folder, a sweep of N trials in a ledger (resolved configs, per-metric
summaries, a few failed trials) and the same N runs in an MLflow SQLite store (params =
the resolved config, a handful of metrics over a few epochs, logged with ``log_batch``,
nested under a parent run). Then times, median of R runs:

- ``compare_sweeps`` (the service: open the ledger, two SELECTs, rank, format as CSV),
  also with ``--group-by`` and ``--where``;
- ``nnchain compare`` as a subprocess (Python start-up and imports included);
- ``mlflow.search_runs`` over the sweep's child runs (in process, store already open);
- ``mlflow runs list`` as a subprocess.

    /work/venv/bin/python benchmarks/compare.py [--trials 1000] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

EPOCHS = 10
METRICS = ("train_cost", "val_cost", "train_accuracy", "val_accuracy", "lr")
LAYERS = 3


def cells(count: int) -> list[dict]:
    """``count`` distinct cells: lr x activation x width x seed, in grid order."""
    from nnchain.config import resolve_config
    from nnchain.sweep.keys import trial_key

    lrs = [round(0.001 * 1.5 ** i, 6) for i in range(20)]
    grid = itertools.product(range(10), ("tanh", "relu", "sigmoid", "leaky_relu"),
                             ([16], [32], [16, 16], [32, 32], [64]), lrs)
    out = []
    for seed, activation, hidden, lr in itertools.islice(grid, count):
        overrides = {"train.lr": lr, "model.activation": activation, "model.hidden": hidden,
                     "seed": seed}
        raw = {"seed": seed, "data": {"name": "spirals", "n_samples": 300},
               "model": {"hidden": hidden, "activation": activation},
               "train": {"lr": lr, "epochs": EPOCHS, "batch_size": 32}}
        config = resolve_config(raw, task=("binary", 2))
        out.append({"index": len(out), "key": trial_key(config), "repeat": 0,
                    "config": config, "overrides": overrides})
    return out


def curves(rng, cell: dict) -> dict[str, list[float]]:
    """A few epochs of every metric a trial records (sweep metrics and per-layer norms)."""
    decay = rng.uniform(0.5, 0.95)
    start = rng.uniform(0.6, 1.0)
    cost = [start * decay ** epoch for epoch in range(EPOCHS)]
    series = {"train_cost": cost, "val_cost": [c * rng.uniform(1.0, 1.2) for c in cost],
              "train_accuracy": [1 - c / 2 for c in cost],
              "val_accuracy": [1 - c / 1.8 for c in cost],
              "lr": [cell["config"]["train"]["lr"]] * EPOCHS}
    for layer in range(1, LAYERS + 1):
        for name in ("grad_norm", "weight_norm", "update_ratio"):
            series[f"{name}/layer{layer}"] = list(rng.uniform(0.01, 1.0, EPOCHS))
    return series


def build_ledger(url: str, trials: list[dict], all_curves: list[dict]) -> str:
    from sqlalchemy import update

    from nnchain.ledger import sweeps as ledger_ops
    from nnchain.ledger.models import FAILED, FINISHED, Trial
    from nnchain.ledger.store import open_ledger

    class Cell:
        def __init__(self, values: dict) -> None:
            self.__dict__.update(values)

    ledger = open_ledger(url)
    sweep_id = ledger_ops.new_sweep_id()
    ledger_ops.create_sweep(ledger, sweep_id=sweep_id, name="bench", experiment="bench",
                            spec_text="", fingerprint="bench", metric_name="val_cost",
                            metric_goal="minimize", options={}, tracking_uri="",
                            trials=[Cell(t) for t in trials])
    ids = {t.index: t.id for t in ledger_ops.trials_of(ledger, sweep_id)}
    values = []
    for trial, series in zip(trials, all_curves, strict=True):
        failed = trial["index"] % 50 == 7
        summary = {key: {"last": v[-1], "min": min(v), "max": max(v)}
                   for key, v in series.items()}
        values.append({"id": ids[trial["index"]], "state": FAILED if failed else FINISHED,
                       "reason": "diverged at epoch 4" if failed else "",
                       "metric": None if failed else series["val_cost"][-1],
                       "summary": summary, "epochs": EPOCHS, "last_step": EPOCHS - 1,
                       "run_id": f"{trial['index']:032x}", "train_seconds": 1.0})
    with ledger.session() as session:
        session.execute(update(Trial), values)
    ledger.dispose()
    return sweep_id


def build_mlflow(uri: str, trials: list[dict], all_curves: list[dict]) -> tuple[str, str]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from nnchain.config import to_params

    client = MlflowClient(uri)
    experiment_id = client.create_experiment("bench")
    parent = client.create_run(experiment_id, run_name="bench").info.run_id
    stamp = int(time.time() * 1000)
    for trial, series in zip(trials, all_curves, strict=True):
        run = client.create_run(experiment_id, run_name=f"trial-{trial['index']}",
                                tags={"mlflow.parentRunId": parent,
                                      "nnchain.trial_key": trial["key"]})
        metrics = [Metric(key, value, stamp + step, step) for key, values in series.items()
                   for step, value in enumerate(values)]
        params = [Param(k, v) for k, v in to_params(trial["config"]).items()]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id,
                              "FAILED" if trial["index"] % 50 == 7 else "FINISHED")
    client.set_terminated(parent)
    return experiment_id, parent


def timed(function, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds (this process and its children) of each call.

    CPU time is what a busy machine does not inflate: compare it when others share the CPUs.
    """
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        function()
        wall.append(time.perf_counter() - start)
        cpu.append(_cpu_seconds() - start_cpu)
    return wall, cpu


def _cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run_quietly(command: list[str]) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None,
                        help="build in this folder and keep it, or reuse what a previous "
                             "run built there (default: a temp folder)")
    args = parser.parse_args()

    import numpy as np

    folder = args.keep or Path(tempfile.mkdtemp(prefix="nnchain-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    ledger_url = f"sqlite:///{folder / 'ledger.db'}"
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    rng = np.random.default_rng(0)
    trials = cells(args.trials)
    all_curves = [curves(rng, trial) for trial in trials]

    built = folder / "bench.json"  # a kept folder is reused when built for as many trials
    saved = json.loads(built.read_text()) if built.exists() else {}
    if saved.get("trials") == len(trials):
        experiment_id, parent = saved["experiment_id"], saved["parent"]
        print(f"reusing the ledger and MLflow store in {folder}", file=sys.stderr)
    else:
        for name in ("ledger.db", "mlflow.db"):
            (folder / name).unlink(missing_ok=True)
        start = time.perf_counter()
        build_ledger(ledger_url, trials, all_curves)
        print(f"ledger: {len(trials)} trials written in {time.perf_counter() - start:.1f} s",
              file=sys.stderr)
        start = time.perf_counter()
        experiment_id, parent = build_mlflow(tracking_uri, trials, all_curves)
        print(f"mlflow: {len(trials)} runs x {len(all_curves[0])} metrics x {EPOCHS} steps "
              f"written in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        built.write_text(json.dumps({"trials": len(trials), "experiment_id": experiment_id,
                                     "parent": parent}))

    import mlflow

    from nnchain.ledger.store import open_ledger
    from nnchain.report import output
    from nnchain.report.compare import compare_sweeps

    def service(**options):
        def call() -> None:
            ledger = open_ledger(ledger_url, create=False)
            comparison = compare_sweeps(ledger, ["bench"], **options)
            output.to_csv(comparison)
            ledger.dispose()
            assert comparison.matched > 0
        return call

    mlflow.set_tracking_uri(tracking_uri)

    def search_runs() -> None:
        frame = mlflow.search_runs([experiment_id],
                                   filter_string=f"tags.mlflow.parentRunId = '{parent}'",
                                   order_by=["metrics.val_cost ASC"])
        assert len(frame) == len(trials)

    cli = [sys.executable, "-m", "nnchain", "compare", "bench", "--ledger-url", ledger_url]
    cases = [
        ("nnchain compare_sweeps()  (service)", service()),
        ("  + --group-by model.activation,model.hidden", service(
            group_by=["model.activation", "model.hidden"])),
        ("  + --where train.lr<0.01 --where state=FINISHED", service(
            where=["train.lr<0.01", "state=FINISHED"])),
        ("nnchain compare  (CLI subprocess, table)", lambda: run_quietly(cli)),
        ("nnchain compare  (CLI subprocess, --format csv)",
         lambda: run_quietly([*cli, "--format", "csv"])),
        ("mlflow.search_runs()  (in process, warm)", search_runs),
        ("mlflow runs list  (CLI subprocess)", lambda: run_quietly(
            [sys.executable, "-m", "mlflow", "runs", "list", "--experiment-id",
             experiment_id])),
    ]
    env_before = dict(os.environ)
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri  # for `mlflow runs list`
    search_runs()  # open MLflow's store once: the timed calls are warm
    results = [(name, timed(call, args.repeats)) for name, call in cases]
    os.environ.clear()
    os.environ.update(env_before)

    width = max(len(name) for name, _ in results)
    print(f"\n{len(trials)} trials / runs, {args.repeats} runs each, seconds "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n")
    print(f"{'':<{width}}  {'median':>8}  {'min':>8}  {'max':>8}  {'cpu med':>8}")
    for name, (wall, cpu) in results:
        print(f"{name:<{width}}  {statistics.median(wall):>8.3f}  {min(wall):>8.3f}  "
              f"{max(wall):>8.3f}  {statistics.median(cpu):>8.3f}")
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
