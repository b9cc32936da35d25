"""Scale: random searches of many tiny trials beside the same trainings in a sequential loop
(issue 17).

    MLFLOW_DISABLE_TELEMETRY=true RAY_USAGE_STATS_ENABLED=0 \\
        .venv/bin/python benchmarks/scale.py [--trials 1000,10000] [--epochs 20] [--repeats 1]
        [--tracking-uri URI] [--nnchain-path DIR] [--keep DIR]

The sweep of the issue: XOR (64 points), net 2-4-1 (tanh), ``--epochs`` epochs, every
epoch's default metrics recorded, a random search over lr (log-uniform) and seed. For each
size, in one run:

- ``loop``: the same trials (``expand``) trained one after another in this process with
  ``nnchain.job``, nothing recorded;
- ``nnchain``: ``python -m nnchain sweep run`` in a subprocess on a fresh store (the
  default local Ray and SQLite, or ``--tracking-uri``), from its start to its exit: the
  wall time, the driver's peak RSS (``VmHWM`` of its process, read while it runs);
- the store's size (SQLite file, or the PostgreSQL database) per metric value recorded;
- ``nnchain compare SWEEP`` and ``nnchain sweep status SWEEP`` as subprocesses (Python's
  start included), median of 3.

``--nnchain-path DIR`` runs the sweep from another checkout of nnchain (its directory put
first on ``PYTHONPATH``): an earlier commit measured in the same run. Ratios printed:
nnchain's wall over the loop's (floor 2x at 10,000 trials) and each size's peak RSS over
the smallest size's (floor +50 MB from 1,000 to 10,000).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def spec_text(trials: int, epochs: int) -> str:
    return f"""
name: scale-{trials}
experiment: scale
seed: 0
method: random
run_cap: {trials}
metric: {{name: train_cost, goal: minimize}}
data: {{name: xor, n_samples: 64, noise: 0.1, val_fraction: 0.0}}
model: {{hidden: [4], activation: tanh}}
train: {{epochs: {epochs}, lr: 0.1}}
parameters:
  train.lr: {{distribution: log_uniform, min: 0.001, max: 1.0}}
  seed: {{distribution: int_uniform, min: 0, max: 1000000}}
"""


def loop_seconds(spec_path: Path) -> float:
    """The sweep's trainings one after another in this process, nothing recorded."""
    from nnchain.job import build_job, make_data
    from nnchain.sweep import expand, load_sweep_spec

    trials = expand(load_sweep_spec(str(spec_path)), max_trials=1_000_000)
    data = make_data(trials[0].config["data"])
    started = time.perf_counter()
    for trial in trials:
        for _ in build_job(trial.config, data=data).epochs(0):
            pass
    return time.perf_counter() - started


def run_watched(args: list[str], cwd: Path, env: dict) -> tuple[float, int, str]:
    """Wall seconds, the process's peak RSS in MB, its stdout."""
    started = time.perf_counter()
    out_file = tempfile.TemporaryFile(mode="w+")  # a pipe would fill and block it
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=out_file,
                               stderr=subprocess.DEVNULL, text=True)
    peak = 0
    while process.poll() is None:
        try:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM"):
                    peak = max(peak, int(line.split()[1]) // 1024)
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - started
    out_file.seek(0)
    out = out_file.read()
    out_file.close()
    if process.returncode != 0:
        raise SystemExit(f"{args} exited {process.returncode}: {out[-2000:]}")
    return wall, peak, out


def median_wall(args: list[str], cwd: Path, env: dict, repeats: int = 3) -> float:
    return statistics.median(run_watched(args, cwd, env)[0] for _ in range(repeats))


def store_bytes(home: Path, tracking_uri: str | None) -> int:
    if tracking_uri is None:
        return (home / "nnchain-runs" / "mlflow.db").stat().st_size
    if tracking_uri.startswith("postgresql"):
        import sqlalchemy

        engine = sqlalchemy.create_engine(tracking_uri)
        with engine.connect() as connection:
            size = connection.scalar(sqlalchemy.text(
                "SELECT pg_database_size(current_database())"))
        engine.dispose()
        return int(size)
    return 0


def metric_values(home: Path, tracking_uri: str | None) -> int:
    import sqlalchemy

    uri = tracking_uri or f"sqlite:///{home / 'nnchain-runs' / 'mlflow.db'}"
    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as connection:
        count = connection.scalar(sqlalchemy.text("SELECT COUNT(*) FROM metrics"))
    engine.dispose()
    return int(count)


def measure(trials: int, epochs: int, args, root: Path) -> dict:
    home = root / f"n{trials}-{time.monotonic_ns()}"
    home.mkdir()
    spec = home / "spec.yaml"
    spec.write_text(spec_text(trials, epochs))
    env = dict(os.environ)
    if args.nnchain_path:
        env["PYTHONPATH"] = os.pathsep.join([args.nnchain_path, env.get("PYTHONPATH", "")])
    uri = ["--tracking-uri", args.tracking_uri] if args.tracking_uri else []
    loop = loop_seconds(spec)
    wall, peak, out = run_watched(
        [sys.executable, "-m", "nnchain", "sweep", "run", str(spec), "--quiet", "--format",
         "json", "--max-trials", str(trials), *uri], home, env)
    result = json.loads(out)
    name = result["name"]
    # the reports first: counting the values reads the whole store through the page cache
    compare = median_wall([sys.executable, "-m", "nnchain", "compare", name, *uri], home, env)
    status = median_wall([sys.executable, "-m", "nnchain", "sweep", "status", name, *uri],
                         home, env)
    values = metric_values(home, args.tracking_uri)
    size = store_bytes(home, args.tracking_uri)
    return {"trials": trials, "finished": result["counts"].get("FINISHED", 0),
            "loop": loop, "wall": wall, "peak_mb": peak, "values": values,
            "store_mb": size / 1e6, "bytes_per_value": size / max(1, values),
            "compare": compare, "status": status}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default="1000,10000")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--nnchain-path", default="")
    parser.add_argument("--keep", default="")
    args = parser.parse_args()
    sizes = [int(n) for n in args.trials.split(",")]
    root = Path(args.keep or tempfile.mkdtemp(prefix="nnchain-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for repeat in range(args.repeats):
        for trials in sizes:
            print(f"  {trials} trials, repeat {repeat + 1} ...", file=sys.stderr, flush=True)
            rows.append(measure(trials, args.epochs, args, root))
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print(f"{'trials':>8} {'loop s':>8} {'nnchain s':>10} {'ratio':>6} {'peak MB':>8} "
          f"{'values':>10} {'store MB':>9} {'B/value':>8} {'compare s':>10} {'status s':>9}")
    table = {}
    for trials in sizes:
        mine = [r for r in rows if r["trials"] == trials]
        med = {k: statistics.median(r[k] for r in mine) for k in mine[0] if k != "trials"}
        table[trials] = med
        print(f"{trials:>8} {med['loop']:>8.1f} {med['wall']:>10.1f} "
              f"{med['wall'] / med['loop']:>6.2f} {med['peak_mb']:>8.0f} "
              f"{med['values']:>10.0f} {med['store_mb']:>9.0f} {med['bytes_per_value']:>8.0f} "
              f"{med['compare']:>10.2f} {med['status']:>9.2f}")
    if 10_000 in table:
        ratio = table[10_000]["wall"] / table[10_000]["loop"]
        print(f"{'met' if ratio <= 2 else 'NOT MET'}: 10,000 trials in <= 2x the loop "
              f"({ratio:.2f}x)")
        print(f"{'met' if table[10_000]['compare'] < 0.5 else 'NOT MET'}: compare at 10,000 "
              f"trials < 0.5 s ({table[10_000]['compare']:.2f} s, Python's start included)")
    if 1_000 in table and 10_000 in table:
        growth = table[10_000]["peak_mb"] - table[1_000]["peak_mb"]
        print(f"{'met' if growth <= 50 else 'NOT MET'}: driver peak RSS at 10,000 trials "
              f"<= 50 MB above 1,000 (+{growth:.0f} MB)")


if __name__ == "__main__":
    main()
