"""Benchmark: the 48-trial spirals grid recorded into SQLite directly and through `mlflow server`.

    .venv/bin/python benchmarks/server.py [--repeats 3] [--workers 4] [--threads 4]
        [--epochs 300] [--modes direct,server-1,server-N,server-direct,pg-server-direct]
        [--before REV] [--keep DIR] [--profile]
    .venv/bin/python benchmarks/server.py --record 1,1 4,4 [--repeats 3]

The grid is benchmarks/sweep.py's (issue 3 and issue 17's "48-trial grid"): spirals
(n_samples 200, noise 0.1), network 2-h-h-1 (tanh), h in {8, 16, 32} x lr in {0.05, 0.1,
0.2, 0.5} x seeds 0..3, every epoch's train cost, accuracy, lr and per-layer gradient norms
(6 values an epoch: 86,400 values at 300 epochs), run by ``run_sweep`` as `nnchain sweep
run` runs it (local Ray started inside, trial pictures and weights as artifacts).

Modes, each in its own subprocess on its own fresh store (schema made before the clock):

- ``direct``: ``sqlite:///.../mlflow.db``, the writer's bulk SQL path (``mlflow_sql``);
- ``server-1``: ``mlflow server --workers 1`` on such a store (as `nnchain ui` and the
  deployment started it before issue 17), the writer's requests one at a time
  (``NNCHAIN_SERVER_THREADS=1``, the writer of before);
- ``server-N``: ``mlflow server --workers W`` (``--workers``), the writer's requests from
  ``--threads`` threads;
- ``server-direct``: ``mlflow server --workers W`` on such a store, the sweep writing its
  trials' runs and values into that store itself (``NNCHAIN_TRACKING_STORE_URL``), the
  experiment and parent run through the server (``nnchain/tracking/direct.py``);
- ``pg-server-direct``: the same with a fresh PostgreSQL database behind the server
  (``--pg``, default 127.0.0.1:5432), as the deployment records;
- ``server-before`` (with ``--before REV``): ``mlflow server --workers 1`` and nnchain as it
  was at commit REV (``git archive``, first on the child's ``PYTHONPATH``), the writer
  before the parallel batches.

``--record W,T [W,T ...]`` measures the writer alone instead: 48 runs x 300 steps x 6 keys
and the runs' ends, one ``MetricWriter.flush`` into a fresh ``mlflow server --workers W``
with ``NNCHAIN_SERVER_THREADS=T`` (the nnchain on ``PYTHONPATH`` first, if set).

The rate is metric values recorded / the sweep's wall time (``run_sweep`` from its call,
Ray not started, to its return); the ratio server / direct is taken within each repeat
(modes interleaved) and its median printed, beside issue 17's floor (>= 0.5). Each store
is read back afterwards: every (run, key, step) once, every trial's run FINISHED;
anything else marks the mode WRONG (exit 1).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep import METRIC_KEYS, cell_config, cells, spec_text, time_ray_start  # noqa: E402

FLOOR = 0.5  # server rate / direct rate, at least (issue 17, item 4)
THREADS_ENV = "NNCHAIN_SERVER_THREADS"


# ---------------------------------------------------------------------------- a server
def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != 6379:  # Redis lives there on this machine
            return port


class Server:
    """``mlflow server`` on the store ``store`` (an SQLite file or a URL), in its own
    process group."""

    def __init__(self, folder: Path, store: Path | str, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "mlflow-server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
        env.update(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true",
                   MLFLOW_BACKEND_STORE_URI=store if isinstance(store, str) else
                   f"sqlite:///{store}")
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                 str(self.port), "--workers", str(workers), "--artifacts-destination",
                 str(folder / "artifacts")], cwd=folder, env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server not up in 120 s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------------- the child
def child(args) -> dict:
    """One sweep into ``args.uri``; its wall time and Ray's start inside it."""
    import nnchain.runner.sweep as sweep_module
    from nnchain.runner import cluster
    from nnchain.runner.sweep import SweepOptions, run_sweep

    folder = Path(args.dir)
    os.environ["NNCHAIN_HOME"] = str(folder)
    spec = folder / "bench.yaml"
    spec.write_text(spec_text(args.epochs))
    import ray  # noqa: F401 - its import (~0.7 s) outside the clock, as in sweep.py

    ray_seconds, _ = time_ray_start()
    spent = {"flush": 0.0, "report": 0.0}

    def timed(owner, name: str, what: str) -> None:
        """Sum the seconds spent in ``owner.name`` into ``spent[what]``."""
        real = getattr(owner, name, None)
        if real is None:
            return

        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return real(*a, **k)
            finally:
                spent[what] += time.perf_counter() - started

        setattr(owner, name, wrapper)

    from nnchain.tracking.metrics import MetricWriter

    timed(MetricWriter, "flush", "flush")
    timed(sweep_module, "_publish_report", "report")
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    result = run_sweep(str(spec), [], SweepOptions(tracking_uri=args.uri))
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - started
    cluster.shutdown()
    if profiler is not None:
        profiler.dump_stats(folder / "driver.prof")
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text).strip_dirs()
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(25)
        (folder / "driver.prof.txt").write_text(text.getvalue())
    return {"wall": wall, "ray_start": ray_seconds[0] if ray_seconds else 0.0,
            "status": result.status, "flush": spent["flush"], "report": spent["report"]}


def record(folder: Path, workers: int, threads: int) -> float:
    """Seconds of one flush of the grid's values and ends into a fresh server."""
    import numpy as np
    from mlflow import MlflowClient

    from nnchain.tracking.metrics import Block, MetricWriter
    from nnchain.tracking.store import open_client, quiet_mlflow

    quiet_mlflow()
    folder.mkdir(parents=True)
    open_client(f"sqlite:///{folder / 'mlflow.db'}")
    server = Server(folder, folder / "mlflow.db", workers)
    try:
        os.environ[THREADS_ENV] = str(threads)
        client = MlflowClient(server.url)
        experiment = client.create_experiment("record")
        runs = [client.create_run(experiment).info.run_id for _ in cells()]
        writer = MetricWriter(client, server.url)
        rng, stamp = np.random.default_rng(0), int(time.time() * 1000)
        for run_id in runs:
            writer.add(Block(run_id, 0, {f"key{k}": rng.uniform(size=300).tolist()
                                         for k in range(METRIC_KEYS)},
                             list(range(stamp, stamp + 300))))
            writer.end_run(run_id, "FINISHED", {"nnchain.status_reason": "done"})
        started = time.perf_counter()
        writer.flush()
        seconds = time.perf_counter() - started
        writer.dispose()
        return seconds
    finally:
        server.stop()


def run_child(args) -> None:
    """Everything the child prints goes to stderr, its JSON to stdout."""
    out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    result = child(args)
    with os.fdopen(out, "w") as stream:
        stream.write(json.dumps(result))


# ---------------------------------------------------------------------------- the parent
def read_back(store: str, epochs: int) -> tuple[int, list[str]]:
    """Metric values in the store (an SQLAlchemy URL), and what is wrong with them (empty
    when all is there)."""
    import sqlalchemy

    from nnchain.sweep.keys import trial_key

    engine = sqlalchemy.create_engine(store)
    try:
        with engine.connect() as connection:
            def one(sql: str) -> int:
                return connection.execute(sqlalchemy.text(sql)).scalar_one()

            values = one("SELECT COUNT(*) FROM metrics")
            distinct = one("SELECT COUNT(*) FROM (SELECT DISTINCT run_uuid, key, step "
                           "FROM metrics) AS d")
            children = connection.execute(sqlalchemy.text(
                "SELECT r.status, k.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                "AND t.key = 'mlflow.parentRunId' JOIN tags k ON k.run_uuid = r.run_uuid AND "
                "k.key = 'nnchain.trial_key'")).all()
    finally:
        engine.dispose()
    trials = len(cells())
    expected_keys = {trial_key(cell_config(h, lr, s, epochs)) for h, lr, s in cells()}
    problems = []
    if values != distinct:
        problems.append(f"{values - distinct} duplicate (run, key, step) values")
    if distinct < trials * epochs * METRIC_KEYS:
        problems.append(f"{distinct} metric values, expected {trials * epochs * METRIC_KEYS}+")
    if sorted(status for status, _ in children) != ["FINISHED"] * trials:
        problems.append(f"trial runs: {sorted(status for status, _ in children)}")
    if {key for _, key in children} != expected_keys:
        problems.append("the sweep's trial keys are not the benchmark's cells")
    return values, problems


def measure(mode: str, folder: Path, args) -> dict | None:
    """One sweep in ``mode``; its figures, or None (and why, on stderr)."""
    from nnchain.tracking.store import open_client

    folder.mkdir(parents=True)
    store = f"sqlite:///{folder / 'mlflow.db'}"
    database = None
    if mode == "pg-server-direct":
        database = f"nnchain_bench_{os.getpid()}_{len(list(folder.parent.iterdir()))}"
        _pg_admin(args.pg, f'CREATE DATABASE "{database}"')
        store = f"{args.pg.rsplit('/', 1)[0]}/{database}".replace(
            "postgresql://", "postgresql+psycopg://", 1)
    open_client(store)  # the schema (WAL, large pages, as nnchain makes a store)
    uri = store
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0")
    env.pop("NNCHAIN_TRACKING_STORE_URL", None)
    server = None
    if mode != "direct":
        workers, threads = (1, 1) if mode in ("server-1", "server-before") else \
            (args.workers, args.threads)
        env[THREADS_ENV] = str(threads)
        if mode == "server-before":
            env["PYTHONPATH"] = str(args.before_src)
        if mode.endswith("server-direct"):
            env["NNCHAIN_TRACKING_STORE_URL"] = store
        server = Server(folder, store, workers)
        uri = server.url
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--uri", uri,
               "--dir", str(folder), "--epochs", str(args.epochs)]
    if args.profile:
        command.append("--profile")
    log = folder / "child.log"
    print(f"  {mode} ... log {log}", file=sys.stderr, flush=True)
    try:
        with log.open("w") as stderr:
            process = subprocess.run(command, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                     text=True, timeout=args.timeout, cwd=folder)
    except subprocess.TimeoutExpired:
        print(f"  {mode}: timed out", file=sys.stderr)
        return None
    finally:
        if server is not None:
            server.stop()
    if process.returncode != 0:
        tail = "\n    ".join(log.read_text().strip().splitlines()[-6:])
        print(f"  {mode}: exit {process.returncode}\n    {tail}", file=sys.stderr)
        return None
    result = json.loads(process.stdout)
    result["values"], result["problems"] = read_back(store, args.epochs)
    if database is not None:
        _pg_admin(args.pg, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    result["rate"] = result["values"] / result["wall"]
    print(f"  {mode}: {result['wall']:.2f} s, {result['rate']:,.0f} values/s "
          f"{'; '.join(result['problems'])}", file=sys.stderr, flush=True)
    return result


def _pg_admin(admin_url: str, statement: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(statement))
    finally:
        engine.dispose()


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="server-N's uvicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="server-N's writer threads")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--modes",
                        default="direct,server-1,server-N,server-direct,pg-server-direct")
    parser.add_argument("--before", metavar="REV",
                        help="add mode server-before: nnchain at commit REV, 1 worker")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="pg-server-direct's PostgreSQL (an admin URL)")
    parser.add_argument("--keep", type=Path, default=None, help="keep stores and logs here")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile each driver: DIR/driver.prof and .prof.txt")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per sweep")
    parser.add_argument("--record", nargs="+", metavar="W,T",
                        help="instead: the writer alone into W workers from T threads")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    if args.record:
        root = args.keep or Path(tempfile.mkdtemp(prefix="nnchain-server-record-"))
        for repeat in range(args.repeats):
            for pair in args.record:
                workers, threads = (int(n) for n in pair.split(","))
                seconds = record(root / f"record-{workers}-{threads}-{repeat}", workers,
                                 threads)
                load = os.getloadavg()[0]
                print(f"workers {workers} threads {threads}: {seconds:.2f} s, "
                      f"{len(cells()) * 300 * METRIC_KEYS / seconds:,.0f} values/s "
                      f"(load {load:.1f})", flush=True)
        return
    modes = args.modes.split(",")
    root = args.keep or Path(tempfile.mkdtemp(prefix="nnchain-server-bench-"))
    if args.before:
        args.before_src = root / f"nnchain-{args.before}"
        args.before_src.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", args.before, "nnchain"], check=True,
                                 capture_output=True, cwd=Path(__file__).resolve().parents[1])
        subprocess.run(["tar", "-x", "-C", str(args.before_src)], input=archive.stdout,
                       check=True)
        modes.insert(modes.index("server-N") if "server-N" in modes else len(modes),
                     "server-before")
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"stores under {root}", file=sys.stderr)
    runs: dict[str, list] = {mode: [] for mode in modes}
    for repeat in range(args.repeats):
        print(f"repeat {repeat + 1} of {args.repeats}", file=sys.stderr)
        for mode in modes:
            runs[mode].append(measure(mode, root / f"{mode}-{repeat}", args))
    load = os.getloadavg()

    wrong = False
    label = {"direct": "SQLite directly (mlflow_sql)",
             "server-before": f"mlflow server --workers 1, nnchain at {args.before}",
             "server-1": "mlflow server --workers 1, 1 request at a time",
             "server-N": f"mlflow server --workers {args.workers}, {args.threads} threads",
             "server-direct": f"mlflow server --workers {args.workers}, runs into its SQLite",
             "pg-server-direct": f"mlflow server --workers {args.workers}, runs into its "
                                 f"PostgreSQL"}
    print(f"\n{len(cells())} trials x {args.epochs} epochs x {METRIC_KEYS} values; "
          f"{args.repeats} repeats, medians; load average after: {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}")
    print(f"{'mode':50} {'wall s':>7} {'after Ray s':>11} {'flush s':>7} {'report s':>8} "
          f"{'values/s':>9} {'vs direct':>9}  check")
    for mode in modes:
        done = [r for r in runs[mode] if r is not None]
        problems = sorted({p for r in done for p in r["problems"]})
        wrong |= bool(problems) or len(done) < args.repeats
        pairs = zip(runs[mode], runs.get("direct", []), strict=False)
        ratios = [r["rate"] / d["rate"] for r, d in pairs if r is not None and d is not None]
        ratio = median(ratios)
        print(f"{label[mode]:50} {median([r['wall'] for r in done]) or 0:7.2f} "
              f"{median([r['wall'] - r['ray_start'] for r in done]) or 0:11.2f} "
              f"{median([r['flush'] for r in done]) or 0:7.2f} "
              f"{median([r['report'] for r in done]) or 0:8.2f} "
              f"{median([r['rate'] for r in done]) or 0:9,.0f} "
              f"{'' if ratio is None else f'{ratio:.2f}':>9}  "
              f"{'ok' if not problems and len(done) == args.repeats else 'WRONG'}"
              f"{': ' + '; '.join(problems) if problems else ''}")
        if ratios and mode != "direct":
            met = "met" if ratio >= FLOOR else "NOT MET"
            print(f"  {mode} / direct rate, each repeat: "
                  f"{' '.join(f'{r:.2f}' for r in ratios)}; floor >= {FLOOR}: {met}")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
