"""Benchmark: a 48-trial sweep with nnchain beside Ray Tune + MLflow and a plain loop.

    /work/venv/bin/python benchmarks/sweep.py [--repeats N] [--skip-stock] [--epochs 1000]
        [--short-epochs 300] [--keep DIR] [--profile] [--timeout 900]
    /work/venv/bin/python benchmarks/sweep.py --pictures-pairs N [--epochs 1000]

The grid (issue 3, "Speed"): spirals (n_samples 200, noise 0.1, val_fraction 0), network
2-h-h-1 (tanh hidden, sigmoid + bce), h in {8, 16, 32} x lr in LRS x seeds 0..3, full-batch
training, every epoch's costs, accuracy, lr and per-layer gradient norms logged
(``train.track: [grad_norm]``: 6 values an epoch). Every tool trains the same resolved
configs with ``nnchain.job`` (``build_job`` + ``run_job``), so the work is identical.

Each measurement runs in its own subprocess (``--child NAME``, results as JSON on stdout),
so each pays its own Ray start; MLflow stores are created (schema made) before the clock
starts. Measured:

- ``ray-start``: ``ray.init`` as nnchain calls it (``nnchain.runner.cluster.connect``), and
  the first two tasks after it (worker processes start lazily); ``ray-start-stock``: the
  same with a plain ``ray.init(include_dashboard=False)``;
- ``nnchain``: ``run_sweep`` on a fresh SQLite store, from the call (Ray not started) to
  its return; Ray's start inside it is timed by wrapping ``cluster.connect``;
- ``tune-stock``: ``ray.tune`` with ``MLflowLoggerCallback`` (its own SQLite store; Ray
  started by a plain ``ray.init(include_dashboard=False)``, as for both Tune runs),
  defaults otherwise, the trainable reporting once per trial (its final metrics);
- ``tune-tuned``: ``reuse_actors=True``, no callback, no auto loggers, ``verbose=0``; the
  trainable logs every epoch itself, one ``MlflowClient.log_batch`` per trial;
- ``loop``: the 48 trainings one after another in one process, nothing logged;
- ``loop-recorded`` (short grid): the loop with every epoch's values recorded as nnchain
  records them (``MetricWriter`` into a fresh SQLite store, one flush a trial; its runs
  made before the clock starts);
- ``record-nnchain`` / ``record-mlflow``: 48 x 1,000 x 5 metric values into a fresh SQLite
  store with ``MetricWriter`` (one flush a run) and with ``MlflowClient.log_batch`` (one
  call a run; MLflow splits it in 1,000-value requests).

Each store is checked afterwards (runs, FINISHED runs, metric values); a tool that logged
less than it should is marked WRONG. The floors are printed with met / NOT MET.
Utilization = sum of the trials' own training time (ledger ``train_seconds``) /
(cores x (nnchain wall - Ray start inside it)). The short-grid floor compares nnchain with
the loop plus the Ray start that nnchain's own run paid (Ray's start swings 4-10 s between
processes on this machine); the probe's ``ray.init`` is shown beside it.

``--pictures-pairs N`` measures only nnchain's sweep, with each trial's pictures drawn in
its worker (the default) and without (``SweepOptions.pictures_up_to = 0``), in N
alternating pairs; the parent run's report is made in both.

With ``--repeats N`` every measurement runs N times, interleaved; times are medians and
each ratio the median of the per-repeat ratios. Progress and each child's log path go to
stderr, the table to stdout. Exit 0 when every child ran and every store holds what it
should, 1 otherwise (floors not met do not change the exit code).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import os
import pstats
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

HIDDEN = (8, 16, 32)
LRS = (0.05, 0.1, 0.2, 0.5)
SEEDS = (0, 1, 2, 3)
DATA = {"name": "spirals", "n_samples": 200, "noise": 0.1, "val_fraction": 0.0}
METRIC_KEYS = 6  # train_cost, train_accuracy, lr, grad_norm/layer1..3
RECORD_KEYS = ("train_cost", "train_accuracy", "grad_norm/layer1", "grad_norm/layer2",
               "grad_norm/layer3")
RECORD_RUNS, RECORD_STEPS = 48, 1000

FLOOR_STOCK = 0.1  # nnchain wall / stock Ray Tune wall, at most
FLOOR_TUNED = 0.3  # nnchain wall / tuned Ray Tune wall, at most
FLOOR_UTILIZATION = 0.8
FLOOR_RECORDING = 10_000  # values/s


# ---------------------------------------------------------------------------- the grid
def cells() -> list[tuple[int, float, int]]:
    """(hidden width, lr, seed) of every trial, in grid order."""
    return list(itertools.product(HIDDEN, LRS, SEEDS))


def cell_config(hidden: int, lr: float, seed: int, epochs: int) -> dict:
    """The resolved config of one cell, as ``nnchain sweep`` resolves it."""
    from nnchain.config import resolve_config

    raw = {"seed": seed, "data": dict(DATA),
           "model": {"hidden": [hidden, hidden], "activation": "tanh"},
           "train": {"epochs": epochs, "lr": lr, "track": ["grad_norm"]}}
    return resolve_config(raw, task=("binary", 2))


def spec_text(epochs: int) -> str:
    """The sweep spec of the grid, for ``run_sweep``."""
    data = ", ".join(f"{k}: {v}" for k, v in DATA.items())
    widths = ", ".join(f"[{h}, {h}]" for h in HIDDEN)
    return (f"name: bench-sweep\nexperiment: bench\nseed: 0\nmethod: grid\n"
            f"metric: {{name: train_cost, goal: minimize}}\n"
            f"data: {{{data}}}\n"
            f"model: {{hidden: [16, 16], activation: tanh}}\n"
            f"train: {{epochs: {epochs}, lr: 0.1, track: [grad_norm]}}\n"
            f"parameters:\n"
            f"  model.hidden: {{values: [{widths}]}}\n"
            f"  train.lr: {{values: [{', '.join(str(lr) for lr in LRS)}]}}\n"
            f"  seed: {{values: [{', '.join(str(s) for s in SEEDS)}]}}\n")


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path}"


def store_counts(db_file: Path) -> dict:
    """Runs, FINISHED runs, child runs and metric values an MLflow SQLite store holds."""
    connection = sqlite3.connect(db_file)
    try:
        def one(sql: str) -> int:
            return connection.execute(sql).fetchone()[0]

        return {"runs": one("SELECT COUNT(*) FROM runs"),
                "finished": one("SELECT COUNT(*) FROM runs WHERE status = 'FINISHED'"),
                "children": one("SELECT COUNT(*) FROM tags WHERE key = 'mlflow.parentRunId'"),
                "values": one("SELECT COUNT(*) FROM metrics")}
    finally:
        connection.close()


def train_cell(hidden: int, lr: float, seed: int, epochs: int, data, on_epoch=None) -> tuple:
    """One trial's training, as every tool runs it: (outcome, seconds)."""
    from nnchain.job import build_job, run_job

    started = time.perf_counter()
    outcome = run_job(build_job(cell_config(hidden, lr, seed, epochs), data=data),
                      on_epoch=on_epoch)
    return outcome, time.perf_counter() - started


def shared_data(epochs: int):
    from nnchain.job import make_data

    return make_data(cell_config(HIDDEN[0], LRS[0], SEEDS[0], epochs)["data"])


# ---------------------------------------------------------------------------- children
def stock_ray_init() -> dict:
    """A local Ray as Ray itself starts one (no dashboard, quiet); its resources. The Ray
    Tune peers start Ray this way, as nnchain did before it cut Ray's start-up."""
    import logging

    import ray

    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    return ray.cluster_resources()


def child_ray_start(args, stock: bool = False) -> dict:
    import ray

    from nnchain.runner import cluster

    started = time.perf_counter()
    resources = stock_ray_init() if stock else cluster.connect()
    init_seconds = time.perf_counter() - started

    @ray.remote
    def ping() -> int:
        return os.getpid()

    started = time.perf_counter()
    ray.get([ping.remote() for _ in range(int(resources.get("CPU", 1)))])
    first_tasks = time.perf_counter() - started
    ray.shutdown()
    return {"ray_init": init_seconds, "first_tasks": first_tasks}


def child_loop(args) -> dict:
    data = shared_data(args.epochs)
    seconds, statuses = [], []
    started = time.perf_counter()
    for hidden, lr, seed in cells():
        outcome, took = train_cell(hidden, lr, seed, args.epochs, data)
        seconds.append(took)
        statuses.append(outcome.status)
    wall = time.perf_counter() - started
    return {"wall": wall, "train_seconds": sum(seconds), "trials": len(seconds),
            "finished": statuses.count("FINISHED")}


def child_loop_recorded(args) -> dict:
    """The loop, each trial's every epoch recorded as nnchain records it: MetricWriter, one
    flush a trial (its values, its run ended). Runs are made before the clock starts (a
    sweep makes them while Ray starts)."""
    from nnchain.tracking.metrics import MetricWriter
    from nnchain.tracking.store import open_client

    folder = Path(args.dir)
    db_file = folder / "mlflow.db"
    uri = sqlite_uri(db_file)
    client = open_client(uri)  # the schema, made before the clock starts
    experiment = client.create_experiment("loop")
    run_ids = [client.create_run(experiment).info.run_id for _ in cells()]
    writer = MetricWriter(client, uri)
    data = shared_data(args.epochs)
    seconds, statuses = [], []
    started = time.perf_counter()
    for (hidden, lr, seed), run_id in zip(cells(), run_ids, strict=True):
        rows: list = []

        def on_epoch(record, rows=rows) -> None:
            stamp = int(time.time() * 1000)
            rows.extend((key, value, stamp, record.epoch)
                        for key, value in record.metrics.items())

        outcome, took = train_cell(hidden, lr, seed, args.epochs, data, on_epoch)
        writer.end_run(run_id, outcome.status)  # written with the rows, after them
        writer.write(run_id, rows)
        seconds.append(took)
        statuses.append(outcome.status)
    wall = time.perf_counter() - started
    writer.dispose()
    return {"wall": wall, "train_seconds": sum(seconds), "trials": len(seconds),
            "finished": statuses.count("FINISHED"), "store": store_counts(db_file)}


def time_ray_start() -> tuple[list[float], list[float]]:
    """Wrap the sweep driver's Ray start (``cluster.connect``): the lists returned get the
    seconds of each start and the process's CPU time at its end."""
    import nnchain.runner.sweep as sweep_module

    ray_seconds: list[float] = []
    cpu_at_ray: list[float] = []
    connect = sweep_module.cluster.connect

    def timed_connect(*a, **k):
        started = time.perf_counter()
        try:
            return connect(*a, **k)
        finally:
            ray_seconds.append(time.perf_counter() - started)
            cpu_at_ray.append(time.process_time())

    sweep_module.cluster.connect = timed_connect
    return ray_seconds, cpu_at_ray


def child_nnchain(args, pictures: bool = True) -> dict:
    from nnchain.ledger.store import resolve_ledger_url
    from nnchain.runner import cluster
    from nnchain.runner.sweep import SweepOptions, run_sweep
    from nnchain.sweep.keys import trial_key
    from nnchain.tracking.store import open_client

    folder = Path(args.dir)
    os.environ["NNCHAIN_HOME"] = str(folder)
    spec = folder / "bench.yaml"
    spec.write_text(spec_text(args.epochs))
    db_file = folder / "mlflow.db"
    uri = sqlite_uri(db_file)
    open_client(uri)  # the schema, made before the clock starts
    # Ray's import too (~0.7 s): nnchain's driver no longer imports it at module level, so
    # it would otherwise land inside run_sweep; the command pays it either way.
    import ray  # noqa: F401

    ray_seconds, cpu_at_ray = time_ray_start()
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    options = SweepOptions(tracking_uri=uri)
    if not pictures:
        options.pictures_up_to = 0  # no trial pictures (the parent's report is still made)
    result = run_sweep(str(spec), [], options)
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - started
    driver_cpu = time.process_time() - cpu_at_ray[0] if cpu_at_ray else 0.0
    cluster.shutdown()

    if profiler is not None:
        profile_file = folder / f"nnchain-{args.epochs}.prof"
        profiler.dump_stats(profile_file)
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text).strip_dirs()
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(25)
        (folder / f"nnchain-{args.epochs}.prof.txt").write_text(text.getvalue())

    ledger = sqlite3.connect(Path(resolve_ledger_url(uri).removeprefix("sqlite:///")))
    try:
        rows = ledger.execute("SELECT key, state, train_seconds FROM nnchain_trials "
                              "WHERE sweep_id = ?", (result.sweep_id,)).fetchall()
    finally:
        ledger.close()
    expected_keys = {trial_key(cell_config(h, lr, s, args.epochs)) for h, lr, s in cells()}
    return {"wall": wall, "ray_start": ray_seconds[0] if ray_seconds else 0.0,
            "cores": cores(), "status": result.status,
            "trials": len(rows), "finished": sum(state == "FINISHED" for _, state, _ in rows),
            "same_cells": {key for key, _, _ in rows} == expected_keys,
            "train_seconds": sum(seconds for _, _, seconds in rows),
            "driver_cpu": driver_cpu, "store": store_counts(db_file),
            "trial_pictures": sum(1 for _ in folder.rglob("cost_curve.png"))}


def _tune_stock_trainable(params: dict, data=None) -> None:
    from ray import tune

    outcome, seconds = train_cell(params["hidden"], params["lr"], params["seed"],
                                  params["epochs"], data)
    tune.report({**outcome.final, "train_seconds": seconds})


def _tune_tuned_trainable(params: dict, data=None, uri: str = "",
                          experiment_id: str = "") -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    from ray import tune

    from nnchain.config import to_params

    client = MlflowClient(uri)
    run = client.create_run(experiment_id, run_name=f"h{params['hidden']}-lr{params['lr']}-"
                                                    f"s{params['seed']}")
    metrics: list = []

    def on_epoch(record) -> None:
        stamp = int(time.time() * 1000)
        metrics.extend(Metric(key, value, stamp, record.epoch)
                       for key, value in record.metrics.items())

    outcome, seconds = train_cell(params["hidden"], params["lr"], params["seed"],
                                  params["epochs"], data, on_epoch)
    config = cell_config(params["hidden"], params["lr"], params["seed"], params["epochs"])
    client.log_batch(run.info.run_id, metrics=metrics,
                     params=[Param(k, v) for k, v in to_params(config).items()])
    client.set_terminated(run.info.run_id, outcome.status)
    tune.report({"train_cost": outcome.final.get("train_cost", float("nan")),
                 "train_seconds": seconds})


def child_tune(args, tuned: bool) -> dict:
    import ray
    from mlflow import MlflowClient
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    folder = Path(args.dir)
    db_file = folder / "mlflow.db"
    uri = sqlite_uri(db_file)
    MlflowClient(uri).search_experiments()  # the schema, made before the clock starts
    if tuned:
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    data = shared_data(args.epochs)
    space = {"hidden": tune.grid_search(list(HIDDEN)), "lr": tune.grid_search(list(LRS)),
             "seed": tune.grid_search(list(SEEDS)), "epochs": args.epochs}

    started = time.perf_counter()
    stock_ray_init()
    ray_start = time.perf_counter() - started
    if tuned:
        client = MlflowClient(uri)
        experiment = client.create_experiment("tune-tuned")
        trainable = tune.with_parameters(_tune_tuned_trainable, data=data, uri=uri,
                                         experiment_id=experiment)
        tune_config = tune.TuneConfig(metric="train_cost", mode="min", reuse_actors=True)
        run_config = tune.RunConfig(name="tuned", storage_path=str(folder / "ray_results"),
                                    verbose=0)
    else:
        trainable = tune.with_parameters(_tune_stock_trainable, data=data)
        tune_config = tune.TuneConfig(metric="train_cost", mode="min")
        run_config = tune.RunConfig(
            name="stock", storage_path=str(folder / "ray_results"),
            callbacks=[MLflowLoggerCallback(tracking_uri=uri, experiment_name="tune-stock",
                                            save_artifact=False)])
    results = tune.Tuner(trainable, param_space=space, tune_config=tune_config,
                         run_config=run_config).fit()
    wall = time.perf_counter() - started
    ray.shutdown()
    seconds = [r.metrics.get("train_seconds", 0.0) for r in results if r.metrics]
    return {"wall": wall, "ray_start": ray_start, "cores": cores(), "trials": len(results),
            "finished": len(results) - results.num_errors, "train_seconds": sum(seconds),
            "store": store_counts(db_file)}


def record_values():
    """The values of one run: 1,000 steps of the 5 recorded keys."""
    import numpy as np

    rng = np.random.default_rng(0)
    return {key: rng.uniform(0.0, 1.0, RECORD_STEPS) for key in RECORD_KEYS}


def child_record(args, nnchain: bool) -> dict:
    from mlflow import MlflowClient

    folder = Path(args.dir)
    db_file = folder / "mlflow.db"
    uri = sqlite_uri(db_file)
    if nnchain:
        from nnchain.tracking.store import open_client

        client = open_client(uri)
    else:
        client = MlflowClient(uri)
        client.search_experiments()
    experiment = client.create_experiment("record")
    runs = [client.create_run(experiment).info.run_id for _ in range(RECORD_RUNS)]
    columns = record_values()
    stamp = int(time.time() * 1000)
    stamps = list(range(stamp, stamp + RECORD_STEPS))

    if nnchain:
        from nnchain.tracking.metrics import Block, MetricWriter

        writer = MetricWriter(client, uri)
        started = time.perf_counter()
        for run_id in runs:
            writer.add(Block(run_id, 0, columns, stamps))
            writer.flush()
        seconds = time.perf_counter() - started
        writer.dispose()
    else:
        from mlflow.entities import Metric

        started = time.perf_counter()
        for run_id in runs:
            metrics = [Metric(key, float(value), stamps[step], step)
                       for key, values in columns.items() for step, value in enumerate(values)]
            client.log_batch(run_id, metrics=metrics)
        seconds = time.perf_counter() - started
    values = RECORD_RUNS * RECORD_STEPS * len(RECORD_KEYS)
    return {"seconds": seconds, "values": values, "store": store_counts(db_file)}


CHILDREN = {
    "ray-start": child_ray_start,
    "ray-start-stock": lambda args: child_ray_start(args, stock=True),
    "loop": child_loop,
    "loop-recorded": child_loop_recorded,
    "nnchain": child_nnchain,
    "nnchain-nopics": lambda args: child_nnchain(args, pictures=False),
    "tune-stock": lambda args: child_tune(args, tuned=False),
    "tune-tuned": lambda args: child_tune(args, tuned=True),
    "record-nnchain": lambda args: child_record(args, nnchain=True),
    "record-mlflow": lambda args: child_record(args, nnchain=False),
}


def run_child(args) -> None:
    """Run one measurement; everything it prints goes to stderr, its JSON to stdout."""
    out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    result = CHILDREN[args.child](args)
    with os.fdopen(out, "w") as stream:
        stream.write(json.dumps(result))


# ---------------------------------------------------------------------------- parent
def spawn(name: str, folder: Path, epochs: int, timeout: float, profile: bool) -> dict | None:
    """Run child ``name`` in ``folder``; its result, or None (and why, on stderr)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "child.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name,
               "--epochs", str(epochs), "--dir", str(folder)]
    if profile:
        command.append("--profile")
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0")
    print(f"  {name} ({epochs} epochs) ... log {log}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                   start_new_session=True, text=True)
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            print(f"  {name}: timed out after {timeout:g} s", file=sys.stderr)
            return None
    if process.returncode != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        print(f"  {name}: exit {process.returncode}\n    " + "\n    ".join(tail),
              file=sys.stderr)
        return None
    result = json.loads(stdout)
    (folder / "result.json").write_text(stdout)  # each repeat's own figures, for the record
    print(f"  {name}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return result


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def check(name: str, result: dict, epochs: int) -> list[str]:
    """What is wrong with what a tool left in its store (empty when all is there)."""
    trials = len(cells())
    store = result.get("store", {})
    problems = []
    if name in ("nnchain", "tune-stock", "tune-tuned", "loop", "loop-recorded") and \
            result.get("finished") != trials:
        problems.append(f"{result.get('finished')} of {trials} trials finished")
    if name == "nnchain":
        expected = {"children": trials, "runs": trials + 1, "finished": trials + 1,
                    "values": trials * epochs * METRIC_KEYS}
        if not result.get("same_cells"):
            problems.append("the sweep's trial keys are not the benchmark's cells")
    elif name in ("tune-tuned", "loop-recorded"):
        expected = {"runs": trials, "finished": trials, "values": trials * epochs * METRIC_KEYS}
    elif name == "tune-stock":
        expected = {"runs": trials, "finished": trials}
        if store.get("values", 0) < trials * METRIC_KEYS:
            problems.append(f"{store.get('values')} metric values, expected at least "
                            f"{trials * METRIC_KEYS} (each trial's final metrics)")
    elif name.startswith("record-"):
        expected = {"runs": RECORD_RUNS, "values": RECORD_RUNS * RECORD_STEPS * len(RECORD_KEYS)}
    else:
        expected = {}
    for key, value in expected.items():
        if store.get(key) != value:
            problems.append(f"{store.get(key)} {key}, expected {value}")
    return problems


def plan(args) -> list[tuple[str, int]]:
    steps = [("ray-start", 0), ("ray-start-stock", 0), ("loop", args.epochs),
             ("loop", args.short_epochs), ("loop-recorded", args.short_epochs),
             ("nnchain", args.epochs), ("nnchain", args.short_epochs),
             ("tune-tuned", args.epochs)]
    if not args.skip_stock:
        steps.append(("tune-stock", args.epochs))
    return steps + [("record-nnchain", 0), ("record-mlflow", 0)]


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT MET")


def report(args, runs: dict, problems: dict) -> None:
    """The table of wall times, store contents, ratios and floors, on stdout."""
    def values(name: str, epochs: int, key: str, sub: str | None = None) -> list:
        found = []
        for result in runs.get((name, epochs), []):
            if result is None:
                continue
            value = result.get(key)
            found.append(value.get(sub) if sub and isinstance(value, dict) else value)
        return found

    def med(name: str, epochs: int, key: str, sub: str | None = None) -> float | None:
        return median(values(name, epochs, key, sub))

    e, s = args.epochs, args.short_epochs
    n_cores = med("nnchain", e, "cores") or cores()
    stock_init = med("ray-start-stock", 0, "ray_init")
    print(f"\n48-trial grid: spirals n=200, 2-h-h-1 tanh, h {'/'.join(map(str, HIDDEN))} x lr "
          f"{'/'.join(map(str, LRS))} x seeds {SEEDS[0]}-{SEEDS[-1]}, full batch; "
          f"{int(n_cores)} cores; repeats {args.repeats}"
          f"{' (medians)' if args.repeats > 1 else ''}\n")
    header = (f"{'tool':<34}{'epochs':>7}{'wall s':>9}{'ray start s':>12}{'runs':>6}"
              f"{'metric values':>15}{'trials train s':>16}  check")
    print(header)
    print("-" * len(header))
    rows = [("nnchain run_sweep", "nnchain", e), ("nnchain run_sweep", "nnchain", s),
            ("Ray Tune tuned (log_batch/trial)", "tune-tuned", e),
            ("Ray Tune + MLflowLoggerCallback", "tune-stock", e),
            ("sequential loop, no logging", "loop", e), ("sequential loop, no logging", "loop", s),
            ("loop, recorded as nnchain records", "loop-recorded", s)]
    for label, name, epochs in rows:
        if (name, epochs) not in runs:
            print(f"{label:<34}{epochs:>7}{'skipped':>9}")
            continue
        wrong = problems.get((name, epochs), [])
        print(f"{label:<34}{epochs:>7}{fmt(med(name, epochs, 'wall')):>9}"
              f"{fmt(med(name, epochs, 'ray_start')):>12}"
              f"{fmt(med(name, epochs, 'store', 'runs'), '.0f'):>6}"
              f"{fmt(med(name, epochs, 'store', 'values'), ',.0f'):>15}"
              f"{fmt(med(name, epochs, 'train_seconds')):>16}  "
              f"{'WRONG: ' + '; '.join(wrong) if wrong else 'ok'}")
    for label, name in (("Ray start probe, nnchain's", "ray-start"),
                        ("Ray start probe, stock ray.init", "ray-start-stock")):
        print(f"{label:<34}{'':>7}{'':>9}{fmt(med(name, 0, 'ray_init')):>12}   "
              f"first {int(n_cores)} tasks after it: {fmt(med(name, 0, 'first_tasks'))} s")

    print(f"\nrecording {RECORD_RUNS} runs x {RECORD_STEPS} steps x {len(RECORD_KEYS)} keys "
          f"into a fresh SQLite store:")
    rates = {}
    for label, name in (("nnchain MetricWriter", "record-nnchain"),
                        ("MlflowClient.log_batch", "record-mlflow")):
        seconds = med(name, 0, "seconds")
        count = med(name, 0, "values")
        rates[name] = count / seconds if seconds else None
        wrong = problems.get((name, 0), [])
        print(f"  {label:<24}{fmt(seconds):>8} s {fmt(rates[name], ',.0f'):>12} values/s  "
              f"{'WRONG: ' + '; '.join(wrong) if wrong else 'ok'}")

    def per_repeat(function) -> float | None:
        found = []
        for index in range(args.repeats):
            try:
                found.append(function(index))
            except (IndexError, TypeError, ZeroDivisionError, KeyError):
                continue
        return median(found)

    def at(name: str, epochs: int, index: int) -> dict:
        result = runs[(name, epochs)][index]
        if result is None:
            raise TypeError(name)
        return result

    stock = per_repeat(lambda i: at("nnchain", e, i)["wall"] / at("tune-stock", e, i)["wall"]) \
        if ("tune-stock", e) in runs else None
    tuned = per_repeat(lambda i: at("nnchain", e, i)["wall"] / at("tune-tuned", e, i)["wall"])
    # Ray's start swings 4-10 s between processes here, so the floor takes the start that
    # the nnchain run itself paid; one with a stock ray.init is shown for reading.
    short = per_repeat(lambda i: at("nnchain", s, i)["wall"] / (
        at("loop", s, i)["wall"] + at("nnchain", s, i)["ray_start"]))
    short_probe = per_repeat(lambda i: at("nnchain", s, i)["wall"] / (
        at("loop", s, i)["wall"] + at("ray-start-stock", 0, i)["ray_init"]))
    short_recorded = per_repeat(lambda i: at("nnchain", s, i)["wall"] / (
        at("loop-recorded", s, i)["wall"] + at("nnchain", s, i)["ray_start"]))

    def utilization(epochs: int):
        return per_repeat(lambda i: at("nnchain", epochs, i)["train_seconds"] / (
            at("nnchain", epochs, i)["cores"] * (at("nnchain", epochs, i)["wall"]
                                                 - at("nnchain", epochs, i)["ray_start"])))

    use_long, use_short = utilization(e), utilization(s)
    loop_short, nn_short = med("loop", s, "wall"), med("nnchain", s, "wall")
    print("\nfloors")
    lines = [
        (f"nnchain / stock Ray Tune wall ({e} ep)", fmt(stock), f"<= {FLOOR_STOCK}",
         None if stock is None else stock <= FLOOR_STOCK),
        (f"nnchain / tuned Ray Tune wall ({e} ep)", fmt(tuned), f"<= {FLOOR_TUNED}",
         None if tuned is None else tuned <= FLOOR_TUNED),
        (f"nnchain / (loop + its Ray start) ({s} ep)", fmt(short), "<= 1",
         None if short is None else short <= 1.0),
        (f"utilization ({e} ep)", fmt(use_long), f">= {FLOOR_UTILIZATION}",
         None if use_long is None else use_long >= FLOOR_UTILIZATION),
        ("recording, MetricWriter", fmt(rates["record-nnchain"], ",.0f") + " values/s",
         f">= {FLOOR_RECORDING:,}", None if rates["record-nnchain"] is None
         else rates["record-nnchain"] >= FLOOR_RECORDING),
    ]
    for label, value, floor, ok in lines:
        print(f"  {label:<42}{value:>18}  {floor:<12}{verdict(ok)}")
    print("\nfor reading")
    nn_short_ray = med("nnchain", s, "ray_start")
    print(f"  utilization ({s} ep): {fmt(use_short)}")
    print(f"  {s} ep: nnchain {fmt(nn_short)} s (Ray start inside {fmt(nn_short_ray)} s) vs "
          f"loop {fmt(loop_short)} s; with a stock ray.init ({fmt(stock_init)} s) instead: "
          f"{fmt(short_probe)}")
    after_start = per_repeat(
        lambda i: at("nnchain", s, i)["wall"] - at("nnchain", s, i)["ray_start"])
    print(f"  {s} ep: nnchain / (the loop recording every value as nnchain does + its Ray "
          f"start): {fmt(short_recorded)}; after Ray start nnchain took {fmt(after_start)} s, "
          f"the loop {fmt(loop_short)} s, the recording loop "
          f"{fmt(med('loop-recorded', s, 'wall'))} s")
    loop_train = med("loop", e, "train_seconds")
    nn_train = med("nnchain", e, "train_seconds")
    if loop_train and nn_train:
        print(f"  trials' own training time, {e} ep: {fmt(nn_train)} s in nnchain's workers "
              f"vs {fmt(loop_train)} s in the loop ({nn_train / loop_train:.2f}x)")
    nn_wall, nn_ray = med("nnchain", e, "wall"), med("nnchain", e, "ray_start")
    for epochs in (e, s):
        driver_cpu = med("nnchain", epochs, "driver_cpu")
        recorded = med("nnchain", epochs, "store", "values")
        if driver_cpu and recorded:
            print(f"  {epochs} ep: nnchain's driver used {driver_cpu:.2f} CPU s after Ray start "
                  f"(all its threads; {driver_cpu / recorded * 1e6:.1f} us per recorded value)")
    for label, name in (("stock", "tune-stock"), ("tuned", "tune-tuned")):
        after = per_repeat(lambda i, name=name: (
            at("nnchain", e, i)["wall"] - at("nnchain", e, i)["ray_start"]) / (
            at(name, e, i)["wall"] - at(name, e, i)["ray_start"]))
        if after is not None:
            print(f"  nnchain / {label} Ray Tune, each without its Ray start ({e} ep): "
                  f"{after:.2f}")
    first_tasks = med("ray-start", 0, "first_tasks")
    if nn_short and loop_short and nn_short_ray and first_tasks:
        print(f"  {s} ep: nnchain / (loop + its Ray start + the probe's first {int(n_cores)} "
              f"tasks, workers starting, {first_tasks:.2f} s): "
              f"{nn_short / (loop_short + nn_short_ray + first_tasks):.2f}")
    if nn_wall and nn_ray is not None and loop_train:
        ideal = nn_ray + loop_train / n_cores
        print(f"  {e} ep: nnchain after Ray start {nn_wall - nn_ray:.2f} s; the loop's training "
              f"spread over {int(n_cores)} cores would take {loop_train / n_cores:.2f} s "
              f"(ideal wall {ideal:.2f} s)")


def pictures_pairs(args) -> int:
    """Trial pictures on against off: alternating pairs (the order flips every pair), each
    child its own Ray and store; medians of the wall time and of the time after Ray's start.
    Exit 0 when every child ran, 1 otherwise."""
    root = args.keep or Path(tempfile.mkdtemp(prefix="nnchain-pictures-bench-"))
    results: dict[str, list[dict]] = {"nnchain": [], "nnchain-nopics": []}
    try:
        for pair in range(args.pictures_pairs):
            order = ["nnchain", "nnchain-nopics"][::1 if pair % 2 == 0 else -1]
            for name in order:
                result = spawn(name, root / f"p{pair}-{name}", args.epochs, args.timeout, False)
                if result is None or result["finished"] != len(cells()):
                    print(f"  {name}: did not finish every trial", file=sys.stderr)
                    return 1
                results[name].append(result)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    on, off = results["nnchain"], results["nnchain-nopics"]
    rows = [("wall", lambda r: r["wall"]),
            ("after Ray's start", lambda r: r["wall"] - r["ray_start"]),
            ("driver CPU after Ray's start", lambda r: r["driver_cpu"]),
            ("trials' own training time", lambda r: r["train_seconds"])]
    print(f"trial pictures on vs off, {args.epochs} epochs, {len(on)} alternating pairs "
          f"(medians; pictures drawn: {on[0]['trial_pictures']} vs {off[0]['trial_pictures']})")
    print(f"{'figure':<32}{'on':>9}{'off':>9}{'on/off':>9}  (pairwise ratios)")
    for label, value in rows:
        ratios = [value(a) / value(b) for a, b in zip(on, off, strict=True) if value(b)]
        print(f"{label:<32}{median([value(r) for r in on]):>9.2f}"
              f"{median([value(r) for r in off]):>9.2f}{median(ratios):>9.3f}  "
              + " ".join(f"{r:.3f}" for r in ratios))
    wall = median([a["wall"] / b["wall"] for a, b in zip(on, off, strict=True)])
    print(f"floor: wall on/off <= 1.05: {verdict(wall <= 1.05)}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-stock", action="store_true",
                        help="skip Ray Tune + MLflowLoggerCallback (the slow one)")
    parser.add_argument("--epochs", type=int, default=1000, help="epochs of the main grid")
    parser.add_argument("--short-epochs", type=int, default=300,
                        help="epochs of the short grid (nnchain vs loop + Ray start)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep stores, logs and profiles in this folder")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile nnchain's driver; the stats go beside its store")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per child")
    parser.add_argument("--pictures-pairs", type=int, default=0, metavar="N",
                        help="instead: N alternating pairs of the nnchain sweep with trial "
                             "pictures on and off, at --epochs; medians and their ratio")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    if args.pictures_pairs:
        sys.exit(pictures_pairs(args))

    root = args.keep or Path(tempfile.mkdtemp(prefix="nnchain-sweep-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    runs: dict[tuple[str, int], list] = {}
    problems: dict[tuple[str, int], list[str]] = {}
    failed = False
    try:
        for repeat in range(args.repeats):
            print(f"repeat {repeat + 1}/{args.repeats}", file=sys.stderr)
            for name, epochs in plan(args):
                folder = root / f"r{repeat}-{name}-{epochs}"
                if folder.exists():
                    shutil.rmtree(folder)
                result = spawn(name, folder, epochs, args.timeout,
                               args.profile and name == "nnchain")
                runs.setdefault((name, epochs), []).append(result)
                if result is None:
                    failed = True
                    problems.setdefault((name, epochs), []).append("did not complete")
                    continue
                wrong = check(name, result, epochs)
                if wrong:
                    failed = True
                    problems.setdefault((name, epochs), []).extend(wrong)
        (root / "results.json").write_text(json.dumps(
            [{"name": name, "epochs": epochs, "results": results}
             for (name, epochs), results in runs.items()], indent=1))
        report(args, runs, problems)
        if args.profile:
            for path in sorted(root.glob("*/nnchain-*.prof.txt")):
                print(f"\nprofile of nnchain's driver ({path}):\n{path.read_text()}",
                      file=sys.stderr)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
