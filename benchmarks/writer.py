"""The sweep writer's CPU a metric value into a fresh SQLite store, without Ray or training
(issue 17): flushes as a 10,000-trial sweep's writer makes them.

    MLFLOW_DISABLE_TELEMETRY=true .venv/bin/python benchmarks/writer.py \\
        [--flushes 40] [--repeats 3] [--nnchain-path DIR]

Each flush: 113 runs (ids from ``mlflow_sql.ordered_run_ids``, as the sweep makes them) x
the 11 metric keys and 20 steps of ``store_inserts.py``, about 25,000 values (the
driver's ``FLUSH_VALUES``), written by ``MlflowTables.write`` in one transaction. Each
measurement is a fresh process on a fresh store; the process CPU time of the writes is
divided by the values written. With ``--nnchain-path DIR`` (another checkout of nnchain)
the two alternate, repeat by repeat, and the ratio of their medians is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from store_inserts import KEYS, STEPS  # noqa: E402 - a sweep's metric keys and epochs

RUNS = 113  # runs a flush: 113 x 11 keys x 20 steps is about the driver's FLUSH_VALUES

MEASURE = """
import json, sys, tempfile, time
import numpy as np
from nnchain.tracking import mlflow_sql
from nnchain.tracking.metrics import Block
from nnchain.tracking.store import open_client

keys, runs, steps, flushes = json.loads(sys.argv[1])
uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
open_client(uri)
tables = mlflow_sql.open_tables(uri)
ids, rng, stamp = mlflow_sql.ordered_run_ids(), np.random.default_rng(0), 1_764_800_000_000
batches = []
for _ in range(flushes):
    batch = []
    for _ in range(runs):
        stamps = list(range(stamp, stamp + steps))
        stamp += steps
        batch.append(Block(next(ids), 0, {key: rng.random(steps) for key in keys}, stamps))
    batches.append(batch)
cpu = time.process_time()
for batch in batches:
    tables.write(batch, {}, {})
cpu = time.process_time() - cpu
print(json.dumps({"us_per_value": cpu / (flushes * runs * len(keys) * steps) * 1e6}))
"""


def measure(path: str, flushes: int) -> float:
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    env["PYTHONPATH"] = os.pathsep.join([path, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", MEASURE, json.dumps([KEYS, RUNS, STEPS,
                                                                     flushes])],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])["us_per_value"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flushes", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nnchain-path", default="")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parents[1])
    paths = {"this checkout": here}
    if args.nnchain_path:
        paths["--nnchain-path"] = str(Path(args.nnchain_path).resolve())
    results: dict[str, list[float]] = {name: [] for name in paths}
    for repeat in range(args.repeats):
        for name, path in paths.items():
            results[name].append(measure(path, args.flushes))
            print(f"  repeat {repeat + 1}, {name}: {results[name][-1]:.2f} us a value",
                  flush=True)
    values = args.flushes * RUNS * len(KEYS) * STEPS
    print(f"writer CPU a value, {values:,} values in {args.flushes} flushes, "
          f"medians of {args.repeats}:")
    for name, found in results.items():
        print(f"  {name:>14}: {statistics.median(found):.2f} us "
              f"({', '.join(f'{v:.2f}' for v in found)})")
    if args.nnchain_path:
        ratio = statistics.median(results["this checkout"]) / \
            statistics.median(results["--nnchain-path"])
        print(f"  ratio this / --nnchain-path: {ratio:.3f}")


if __name__ == "__main__":
    main()
