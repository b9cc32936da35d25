"""Search quality and cost: nnchain's random, random + ASHA, bayes, bayes + Hyperband beside
Optuna in-process (TPESampler + HyperbandPruner) and Ray Tune (ASHAScheduler + OptunaSearch,
logging to MLflow), on one space and budget (issue 16, "Speed and quality").

    MLFLOW_DISABLE_TELEMETRY=true RAY_USAGE_STATS_ENABLED=0 \\
        .venv/bin/python benchmarks/search.py [--seeds 5] [--trials 30] [--epochs 100] \\
        [--skip-tune] [--png curves.png]

The space: digits, a 2-hidden-layer relu net of width w (16..256), adam, lr log-uniform
1e-4..1, weight decay log-uniform 1e-6..1e-2, up to ``--epochs`` epochs, ``--trials``
trials a search; metric val_accuracy (maximize). Every tool trains through ``nnchain.job``,
so the work per epoch is the same. Printed per method and search seed: the best
val_accuracy, the epochs trained, wall time, and the epochs spent until the best came
within 1% of random search's final best; then the issue's floors, each met or not.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

WIDTHS = [16, 32, 64, 128, 256]


def spec_text(method: str, seed: int, trials: int, epochs: int, rule: str) -> str:
    widths = ", ".join(f"[{w}, {w}]" for w in WIDTHS)
    return f"""
name: search-{method}-{seed}
experiment: search-bench
seed: {seed}
method: {method}
run_cap: {trials}
metric: {{name: val_accuracy, goal: maximize}}
{rule}
data: {{name: digits, val_fraction: 0.2}}
model: {{hidden: [64, 64], activation: relu, output: softmax, cost: cross_entropy}}
train: {{epochs: {epochs}, batch_size: 64, optimizer: adam, track: []}}
parameters:
  train.lr: {{distribution: log_uniform, min: 1e-4, max: 1}}
  model.hidden: {{values: [{widths}]}}
  train.weight_decay: {{distribution: log_uniform, min: 1e-6, max: 1e-2}}
"""


def curve(points: list[tuple[float, int, float]]) -> list[tuple[int, float, float]]:
    """(cumulative epochs, seconds, best so far) from (end time, epochs, value) in end order."""
    out, spent, best = [], 0, -math.inf
    for seconds, epochs, value in sorted(points):
        spent += epochs
        if value is not None and math.isfinite(value):
            best = max(best, value)
        out.append((spent, seconds, best))
    return out


def run_nnchain(method: str, rule: str, seed: int, args, root: Path) -> dict:
    from nnchain.ledger import sweeps as ledger_ops
    from nnchain.ledger.store import open_ledger
    from nnchain.runner.sweep import SweepOptions, run_sweep

    home = root / f"{method}-{'et' if rule else 'plain'}-{seed}"
    home.mkdir()
    spec = home / "spec.yaml"
    spec.write_text(spec_text(method, seed, args.trials, args.epochs, rule))
    uri = f"sqlite:///{home}/mlflow.db"
    started = time.perf_counter()
    result = run_sweep(str(spec), [], SweepOptions(tracking_uri=uri, max_concurrent=2,
                                                   flush_seconds=0.5))
    wall = time.perf_counter() - started
    ledger = open_ledger(f"sqlite:///{home}/ledger.db")
    trials = ledger_ops.trials_of(ledger, result.sweep_id)
    t0 = min(t.started_at for t in trials)
    points = [((t.ended_at - t0).total_seconds(), t.epochs,
               t.metric if t.state == "FINISHED" else None) for t in trials]
    ledger.dispose()
    return {"curve": curve(points), "wall": wall}


def train_epochs(config: dict, data, on_epoch) -> int:
    """Train ``config`` epoch by epoch; ``on_epoch(epoch, val_accuracy)`` True stops it."""
    from nnchain.job import build_job

    job, ran = build_job(config, data=data), 0
    for record in job.epochs():
        ran = record.epoch + 1
        if on_epoch(ran, record.metrics.get("val_accuracy", math.nan)):
            break
    return ran


def configs_of(spec_path: Path):
    from nnchain.sweep import load_sweep_spec
    from nnchain.sweep.expansion import bayes_template, cell_config

    spec = load_sweep_spec(spec_path)
    return spec, bayes_template(spec), cell_config


def run_optuna(seed: int, args, root: Path) -> dict:
    import optuna

    from nnchain.job import make_data

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = root / f"optuna-{seed}.yaml"
    path.write_text(spec_text("bayes", seed, args.trials, args.epochs, ""))
    spec, template, cell_config = configs_of(path)
    data = make_data(template["data"])
    points, started = [], time.perf_counter()

    def objective(trial):
        overrides = {"train.lr": trial.suggest_float("lr", 1e-4, 1, log=True),
                     "model.hidden": [trial.suggest_categorical("w", WIDTHS)] * 2,
                     "train.weight_decay": trial.suggest_float("wd", 1e-6, 1e-2, log=True)}
        config, last = cell_config(spec, overrides), [math.nan]

        def on_epoch(epoch, value):
            last[0] = value
            trial.report(value, epoch)
            return trial.should_prune()

        ran = train_epochs(config, data, on_epoch)
        pruned = ran < args.epochs
        points.append((time.perf_counter() - started, ran, None if pruned else last[0]))
        if pruned:
            raise optuna.TrialPruned()
        return last[0]

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.HyperbandPruner(
                                    min_resource=args.min_iter, max_resource=args.epochs,
                                    reduction_factor=3))
    study.optimize(objective, n_trials=args.trials)
    return {"curve": curve(points), "wall": time.perf_counter() - started}


def run_tune(seed: int, args, root: Path) -> dict:
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from nnchain.job import make_data

    path = root / f"tune-{seed}.yaml"
    path.write_text(spec_text("bayes", seed, args.trials, args.epochs, ""))
    spec, template, _ = configs_of(path)
    data_ref = ray.put(make_data(template["data"]))
    spec_ref = ray.put(spec)

    def trainable(params):
        from nnchain.sweep.expansion import cell_config

        config = cell_config(ray.get(spec_ref), {
            "train.lr": params["lr"], "model.hidden": [params["w"]] * 2,
            "train.weight_decay": params["wd"]})
        train_epochs(config, ray.get(data_ref), lambda epoch, value: bool(
            tune.report({"val_accuracy": value, "epochs": epoch})))

    started = time.perf_counter()
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"lr": tune.loguniform(1e-4, 1), "w": tune.choice(WIDTHS),
                     "wd": tune.loguniform(1e-6, 1e-2)},
        tune_config=tune.TuneConfig(
            metric="val_accuracy", mode="max", num_samples=args.trials,
            search_alg=OptunaSearch(seed=seed), max_concurrent_trials=2,
            scheduler=ASHAScheduler(max_t=args.epochs, grace_period=args.min_iter,
                                    reduction_factor=3, time_attr="epochs")),
        run_config=tune.RunConfig(storage_path=str(root / "tune"), verbose=0,
                                  callbacks=[MLflowLoggerCallback(
                                      tracking_uri=f"sqlite:///{root}/tune-{seed}.db",
                                      experiment_name="tune")]))
    results = tuner.fit()
    wall = time.perf_counter() - started
    ends = []
    for result in results:
        frame = result.metrics_dataframe
        if frame is None or frame.empty:
            continue
        ran = int(frame["epochs"].max())
        value = float(frame["val_accuracy"].iloc[-1]) if ran == args.epochs else None
        ends.append((float(frame["timestamp"].min()), float(frame["timestamp"].max()), ran,
                     value))
    first = min(end[0] for end in ends)
    points = [(last - first, ran, value) for _, last, ran, value in ends]
    return {"curve": curve(points), "wall": wall}


def decision_cost(epochs: int = 100, trials: int = 200) -> float:
    """Microseconds per reported epoch of the driver's pruner (Hyperband, eta 3)."""
    import random

    from nnchain.sweep.pruning import EarlyTerminate, Pruner

    pruner = Pruner(EarlyTerminate("hyperband", 1, 3), epochs, "maximize")
    rng, calls = random.Random(0), 0
    started = time.perf_counter()
    for trial in range(trials):
        for epoch in range(1, epochs + 1):
            calls += 1
            judged = pruner.decide(trial, trial, epoch, rng.random())
            if judged and judged[0].stop:
                break
    return (time.perf_counter() - started) / calls * 1e6


def epochs_to(curve_points, target: float) -> int | None:
    return next((spent for spent, _, best in curve_points if best >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--min-iter", type=int, default=3)
    parser.add_argument("--skip-tune", action="store_true")
    parser.add_argument("--png", default="")
    args = parser.parse_args()
    from nnchain.runner import cluster

    cluster.connect(None, num_cpus=2)
    rule_asha = f"early_terminate: {{type: asha, min_iter: {args.min_iter}, eta: 3}}"
    rule_hb = f"early_terminate: {{type: hyperband, min_iter: {args.min_iter}, eta: 3}}"
    methods = {"random": ("random", ""), "random+asha": ("random", rule_asha),
               "bayes": ("bayes", ""), "bayes+hyperband": ("bayes", rule_hb)}
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seed in range(args.seeds):
            for name, (method, rule) in methods.items():
                results.setdefault(name, []).append(run_nnchain(method, rule, seed, args, root))
            results.setdefault("optuna", []).append(run_optuna(seed, args, root))
            if not args.skip_tune:
                results.setdefault("tune", []).append(run_tune(seed, args, root))
    cluster.shutdown()
    print(f"{'method':16} {'seed':>4} {'best':>7} {'epochs':>7} {'wall s':>7} {'to 99%':>7}")
    reached = {}
    for seed in range(args.seeds):
        target = 0.99 * results["random"][seed]["curve"][-1][2]
        for name, runs in results.items():
            run = runs[seed]
            last = run["curve"][-1]
            reached[name, seed] = epochs_to(run["curve"], target)
            print(f"{name:16} {seed:4} {last[2]:7.4f} {last[0]:7} {run['wall']:7.1f} "
                  f"{reached[name, seed] or '-':>7}")
    floors = []
    ratio = [reached["random+asha", s] / results["random"][s]["curve"][-1][0]
             if reached["random+asha", s] else math.inf for s in range(args.seeds)]
    floors.append(("random+ASHA reaches 99% of random's best in <= 1/3 of its epochs "
                   f"(median ratio {statistics.median(ratio):.2f})",
                   statistics.median(ratio) <= 1 / 3))
    wins = sum(results["bayes+hyperband"][s]["curve"][-1][2] >=
               results["optuna"][s]["curve"][-1][2] for s in range(args.seeds))
    floors.append((f"bayes+hyperband's best >= Optuna in-process in >= 3 of 5 seeds "
                   f"({wins} of {args.seeds})", wins >= min(3, args.seeds)))
    if "tune" in results:
        share = statistics.median(results["bayes+hyperband"][s]["wall"] /
                                  results["tune"][s]["wall"] for s in range(args.seeds))
        floors.append((f"nnchain wall <= 0.3 x Ray Tune's (median {share:.2f})", share <= 0.3))
    cost = decision_cost()
    floors.append((f"decision cost < 1 ms per reported epoch ({cost:.1f} us)", cost < 1000))
    for text, met in floors:
        print(f"{'MET ' if met else 'MISS'} {text}")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, (by_epochs, by_time) = plt.subplots(1, 2, figsize=(11, 4))
        for name, runs in results.items():
            points = runs[0]["curve"]
            by_epochs.step([p[0] for p in points], [p[2] for p in points], label=name)
            by_time.step([p[1] for p in points], [p[2] for p in points], label=name)
        by_epochs.set(xlabel="epochs trained", ylabel="best val_accuracy")
        by_time.set(xlabel="seconds", ylabel="best val_accuracy")
        by_epochs.legend()
        figure.savefig(args.png, dpi=100)
    print(json.dumps({name: [r["curve"][-1] for r in runs] for name, runs in results.items()}))


if __name__ == "__main__":
    main()
