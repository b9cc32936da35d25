"""Benchmark: an nnchain MLflow model's ``predict`` on 100,000 rows, after load (issue 15).

Trains one small network in process (the digits workflow's shape by default: 64 inputs,
hidden [32, 32], softmax over 10 classes; a few epochs, the weights are what matter),
logs it as a model into a fresh SQLite store, loads it with ``mlflow.pyfunc.load_model``
and times, median of R runs:

- ``pyfunc ndarray``: ``model.predict(x)`` with x (N, d) float64 (MLflow's schema check,
  the scaling, nnchain's forward pass);
- ``pyfunc DataFrame``: the same rows as a pandas DataFrame;
- ``numpy``: a plain numpy forward pass on the same weights and scaling, written here.

The floor printed: pyfunc ndarray under 1 s. The ratio to the numpy pass is printed too.

    MLFLOW_DISABLE_TELEMETRY=true .venv/bin/python benchmarks/predict.py \
        [--rows 100000] [--hidden 32,32] [--repeats 5] [--dataset digits]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402

FLOOR_SECONDS = 1.0


def numpy_forward(weights: dict, x: np.ndarray, mean, scale) -> np.ndarray:
    """relu hidden layers, softmax output: the network written with numpy alone."""
    a = (x - mean) / scale
    layers = len(weights) // 2
    for i in range(1, layers):
        a = np.maximum(a @ weights[f"W{i}"] + weights[f"b{i}"], 0.0)
    z = a @ weights[f"W{layers}"] + weights[f"b{layers}"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def timed(call, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--hidden", default="32,32")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from nnchain.config import resolve_config
    from nnchain.job import build_job, make_data, run_job
    from nnchain.tracking.models import log_trial_model, model_data

    hidden = [int(h) for h in args.hidden.split(",")]
    config = resolve_config({"data": {"name": args.dataset, "val_fraction": 0.2},
                             "model": {"hidden": hidden, "activation": "relu",
                                       "output": "softmax", "cost": "cross_entropy"},
                             "train": {"epochs": 3, "batch_size": 64}, "seed": 0})
    data = make_data(config["data"])
    outcome = run_job(build_job(config, data))
    with tempfile.TemporaryDirectory(prefix="nnchain-predict-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        client = MlflowClient(tracking_uri=uri)
        experiment = client.create_experiment("bench", artifact_location=Path(tmp).as_uri())
        run_id = client.create_run(experiment).info.run_id
        client.set_terminated(run_id)
        start = time.perf_counter()
        model_uri = log_trial_model(uri, run_id, config, outcome.weights,
                                    model_data(data, config))
        log_seconds = time.perf_counter() - start
        mlflow.set_tracking_uri(uri)
        start = time.perf_counter()
        model = mlflow.pyfunc.load_model(model_uri)
        load_seconds = time.perf_counter() - start

        rng = np.random.default_rng(0)
        d = data.train.x.shape[1]
        x = rng.normal(size=(args.rows, d)) * data.scale + data.mean
        frame = pd.DataFrame(x, columns=list(data.train.feature_names))
        weights = {k: np.asarray(v, np.float64) for k, v in outcome.weights.items()}
        model.predict(x[:10])  # first call outside the clock

        pyfunc_seconds, got = timed(lambda: model.predict(x), args.repeats)
        frame_seconds, got_frame = timed(lambda: model.predict(frame), args.repeats)
        numpy_seconds, expected = timed(
            lambda: numpy_forward(weights, x, data.mean, data.scale), args.repeats)
    error = max(float(np.abs(got - expected).max()), float(np.abs(got_frame - expected).max()))

    print(f"model: {d} inputs, hidden {hidden}, {expected.shape[1]} outputs; "
          f"{args.rows:,} rows, median of {args.repeats}")
    print(f"log_model {log_seconds:.2f} s, load_model {load_seconds:.2f} s (not in the floor)")
    print(f"pyfunc ndarray   {pyfunc_seconds:.3f} s  ({pyfunc_seconds / numpy_seconds:.2f}x numpy)")
    print(f"pyfunc DataFrame {frame_seconds:.3f} s  ({frame_seconds / numpy_seconds:.2f}x numpy)")
    print(f"numpy forward    {numpy_seconds:.3f} s")
    print(f"max |pyfunc - numpy| = {error:.2e}")
    met = pyfunc_seconds < FLOOR_SECONDS and error <= 1e-12
    print(f"floor: predict on {args.rows:,} rows under {FLOOR_SECONDS:.0f} s after load, "
          f"equal to numpy to 1e-12: {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
