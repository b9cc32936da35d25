"""SQLite's CPU a metric value in MLflow's ``metrics`` table, by run-id order and page cache
(issue 17): why the writer's runs get ids that sort in the order made.

    .venv/bin/python benchmarks/store_inserts.py [--runs 3000] [--cache-kib 0,16384]

A fresh SQLite file with MLflow's ``metrics`` and ``latest_metrics`` tables (the schema
of the installed MLflow, made through ``nnchain``'s store opening: 16 KiB pages, WAL,
``synchronous=NORMAL``), filled as a sweep's writer fills it: flushes of 110 runs x 11 keys x
20 steps, each flush's rows sorted by the primary key and inserted 1,000 to a statement in
one transaction. Run ids either uuid4 (random) or ``mlflow_sql.ordered_run_ids``. Prints
the process CPU time a value of the inserts and commits (SQLite runs in this process).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
import uuid
from itertools import chain, islice
from pathlib import Path

KEYS = ["train_cost", "train_accuracy", "grad_norm/layer1", "grad_norm/layer2",
        "delta_norm/layer1", "delta_norm/layer2", "weight_norm/layer1", "weight_norm/layer2",
        "update_ratio/layer1", "update_ratio/layer2", "dead_fraction/layer1"]
STEPS, RUNS_PER_FLUSH = 20, 110
COLUMNS = "key, value, timestamp, step, is_nan, run_uuid"


def schema(folder: Path) -> list[str]:
    """MLflow's CREATE statements of the two tables, from a store nnchain made."""
    from nnchain.tracking.store import open_client

    open_client(f"sqlite:///{folder / 'template.db'}")
    with sqlite3.connect(folder / "template.db") as connection:
        return [sql for (sql,) in connection.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name IN ('metrics', 'latest_metrics') "
            "AND sql IS NOT NULL")]


def cpu_a_value(folder: Path, statements: list[str], runs: int, ordered: bool,
                cache_kib: int) -> float:
    from nnchain.tracking.mlflow_sql import PAGE_SIZE, ordered_run_ids

    path = folder / f"store-{ordered}-{cache_kib}.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(f"PRAGMA page_size={PAGE_SIZE}")
    for sql in statements:
        connection.execute(sql)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    if cache_kib:
        connection.execute(f"PRAGMA cache_size=-{cache_kib}")
    ids = list(islice(ordered_run_ids(), runs)) if ordered \
        else [uuid.uuid4().hex for _ in range(runs)]
    row = "(?, ?, ?, ?, ?, ?)"
    insert = f"INSERT INTO metrics ({COLUMNS}) VALUES " + ", ".join([row] * 1000)
    base, spent = int(time.time() * 1000), 0.0
    for first in range(0, runs, RUNS_PER_FLUSH):
        rows = [(key, random.random(), base + first + step, step, False, run_id)
                for run_id in ids[first:first + RUNS_PER_FLUSH]
                for key in KEYS for step in range(STEPS)]
        rows.sort(key=lambda r: (r[0], r[2], r[3], r[5]))
        started = time.process_time()
        connection.execute("BEGIN")
        for start in range(0, len(rows), 1000):
            part = rows[start:start + 1000]
            if len(part) == 1000:
                connection.execute(insert, tuple(chain.from_iterable(part)))
            else:
                connection.executemany(f"INSERT INTO metrics ({COLUMNS}) VALUES {row}", part)
        connection.execute("COMMIT")
        spent += time.process_time() - started
    connection.close()
    return spent / (runs * len(KEYS) * STEPS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--cache-kib", default="0,16384", help="0: SQLite's default (2 MiB)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nnchain-inserts-") as name:
        folder = Path(name)
        statements = schema(folder)
        print(f"{args.runs} runs x {len(KEYS) * STEPS} values, CPU a value:")
        for cache in (int(c) for c in args.cache_kib.split(",")):
            uuid4 = cpu_a_value(folder, statements, args.runs, False, cache)
            ordered = cpu_a_value(folder, statements, args.runs, True, cache)
            print(f"  cache {cache or 'default'} KiB: uuid4 {uuid4 * 1e6:.1f} us, ordered "
                  f"{ordered * 1e6:.1f} us ({ordered / uuid4:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
