"""Benchmark: ``nnchain report`` on a 1,000-trial sweep (issue 15, "Speed": under 5 s).

    MLFLOW_DISABLE_TELEMETRY=true RAY_USAGE_STATS_ENABLED=0 \\
        /work/venv/bin/python benchmarks/report.py [--trials 1000] [--epochs 50] \\
        [--repeats 5] [--keep DIR]

The sweep is real: ``nnchain sweep run`` on a local Ray (spirals, 2-8-8-1 tanh network,
full batch, every epoch's costs, accuracy and per-layer norms recorded), a grid of
learning rates x widths x repeats making ``--trials`` trials, into a fresh SQLite store.
With ``--keep DIR`` an existing sweep there is reused.

Measured, ``--repeats`` times each (medians):

- ``nnchain report SWEEP --out FILE`` as a user runs it, a fresh process each time (Python
  start and imports included): wall and CPU time;
- in one process: loading the trials from the ledger, reading the curves from the store,
  and drawing and writing the report (``nnchain.report.html.sweep_report``), each timed.

Exit 0 when every run wrote its report, 1 otherwise.
"""

from __future__ import annotations

import argparse
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
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

NAME = "report-bench"
FLOOR_SECONDS = 5.0


def spec_text(trials: int, epochs: int) -> str:
    repeats = 4
    cells = max(1, trials // repeats)
    widths = [4, 8, 16, 32]
    lrs = [round(0.001 * 1.1 ** i, 6) for i in range(max(1, -(-cells // len(widths))))]
    return f"""
name: {NAME}
experiment: report-bench
seed: 0
metric: {{name: val_cost, goal: minimize}}
repeats: {repeats}
data: {{name: spirals, n_samples: 100, noise: 0.1, val_fraction: 0.2}}
model: {{hidden: [8, 8], activation: tanh}}
train: {{epochs: {epochs}, lr: 0.1}}
parameters:
  train.lr: {{values: {lrs}}}
  model.hidden: {{values: {[[w, w] for w in widths]}}}
"""


def record_sweep(folder: Path, trials: int, epochs: int) -> str:
    """The store's URI, after running the sweep there unless it is already recorded."""
    uri = f"sqlite:///{folder / 'nnchain-runs' / 'mlflow.db'}"
    if (folder / "nnchain-runs" / "ledger.db").is_file():
        return uri
    spec = folder / "spec.yaml"
    spec.write_text(spec_text(trials, epochs))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nnchain", "sweep", "run", str(spec),
                           "--tracking-uri", uri, "--max-trials", str(trials * 2)],
                          cwd=folder, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        sys.exit(f"the sweep did not run: {done.stderr.strip()[-2000:]}")
    print(f"sweep recorded in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return uri


def time_cli(uri: str, out: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one ``nnchain report``: on a machine
    shared with other work the CPU time is the steadier figure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nnchain", "report", NAME, "--tracking-uri",
                           uri, "--out", str(out)], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or not out.is_file():
        sys.exit(f"nnchain report failed: {done.stderr.strip()}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def time_parts(uri: str) -> dict[str, float]:
    """The report's steps in this process (imports already paid)."""
    from nnchain.ledger.store import open_existing_ledger
    from nnchain.report import html, summary
    from nnchain.report.query import load_trials

    ledger = open_existing_ledger(uri, None)
    try:
        started = time.perf_counter()
        loaded = load_trials(ledger, [NAME])
        loaded_at = time.perf_counter()
        histories = summary.load_histories(uri, (r["run_id"] for r in loaded.rows), "val_cost",
                                           summary.curve_keys(loaded.metric_keys(), "val_cost"))
        read_at = time.perf_counter()
        _, files = html.sweep_report(ledger, uri, NAME)
        done_at = time.perf_counter()
    finally:
        ledger.dispose()
    values = sum(len(v) for run in histories.values() for v in run.values())
    return {"ledger": loaded_at - started, "curves": read_at - loaded_at,
            "whole report": done_at - read_at, "trials": len(loaded.rows),
            "curve values": values, "html bytes": len(files[html.REPORT])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None,
                        help="record (or reuse) the sweep in this folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="nnchain-report-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        uri = record_sweep(folder, args.trials, args.epochs)
        cli = [time_cli(uri, folder / f"report-{i}.html") for i in range(args.repeats)]
        parts = [time_parts(uri) for _ in range(args.repeats)]
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    first = parts[0]
    print(f"nnchain report on {first['trials']} trials, {first['curve values']:,} curve "
          f"values read, report.html {first['html bytes']:,} bytes; medians of "
          f"{args.repeats}")
    walls, cpus = [w for w, _ in cli], [c for _, c in cli]
    print(f"  nnchain report (fresh process): wall {statistics.median(walls):.2f} s "
          f"(runs: {' '.join(f'{s:.2f}' for s in walls)}), CPU {statistics.median(cpus):.2f} s "
          f"(runs: {' '.join(f'{s:.2f}' for s in cpus)})")
    for key in ("ledger", "curves", "whole report"):
        print(f"  in process, {key}: {statistics.median(p[key] for p in parts):.3f} s")
    print(f"floor: wall under {FLOOR_SECONDS:g} s: "
          f"{'met' if statistics.median(walls) < FLOOR_SECONDS else 'NOT MET'}")


if __name__ == "__main__":
    main()
