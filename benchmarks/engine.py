"""Time one training step of nnchain against a hand-written numpy step and PyTorch CPU.

    python benchmarks/engine.py [--rounds N] [--quick] [--case I] [--threads N] [--clock cpu]

A step is forward, backward and an SGD update of a ReLU network with a softmax +
cross-entropy output, on one fixed batch. Two kinds are timed:

- normal:     what the training loop does on every batch but the last of an epoch;
- diagnostic: the same plus the chain-rule diagnostics (grad, delta, weight norms, update
              ratios, dead fractions) the loop computes on an epoch's last batch.

"numpy" is the same arithmetic written inline as one function (same numpy idioms and
preallocated buffers, no layers, registries or method calls), so nnchain / numpy measures
the engine's overhead.
PyTorch (imported only here, skipped if missing) uses nn.Linear + F.cross_entropy +
optim.SGD; its diagnostic step retains the pre-activation gradients.

Implementations are timed in interleaved rounds in one process, each timed block after
a short pause and one untimed step; each reported time is the median over rounds and
each ratio the median of per-round ratios (robust to the drift of a shared machine).
Ratios > 1 mean nnchain is faster. Each row prints its floors beside the ratios; the
784-1024-1024-10 normal step also has a floor on its share of the machine's float32
matmul rate (``matmul_rate``, the best of a few 512x1024 @ 1024x1024 products; the step's
rate is its multiply-adds over its median time). Both libraries run on their default
thread counts (printed to stderr), or on ``--threads N`` each. On a loaded machine,
``--threads 1 --clock cpu`` times CPU time, which other processes do not inflate.

Update orders (``train.update_order``): the same SGD step of each network in the
layer-by-layer orders, timed against the simultaneous step in interleaved rounds; the
printed ratio (median of per-round ratios, > 1: slower) is also the ratio of the cost of
an epoch, which is that many such steps. ``--orders-only`` runs just this table.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from itertools import pairwise

import numpy as np

from nnchain.nn import build_network, make_optimizer, train_step
from nnchain.nn.orders import layerwise_step

try:
    import torch
except ImportError:  # torch is not a dependency of nnchain
    torch = None

CASES = [  # (sizes, batch, dtype, floor vs torch, floor vs numpy of the normal step)
    ([2, 16, 16, 2], 512, np.float64, 4.0, 1 / 1.05),  # issue 17: within 5% of numpy
    ([64, 128, 64, 10], 32, np.float32, 4.0, None),
    ([784, 256, 128, 10], 128, np.float32, 1.3, None),
    ([784, 1024, 1024, 10], 512, np.float32, 1.0, None),  # issue 17: 1.0x (was 0.9)
]
NUMPY_FLOOR = 1 / 1.15  # nnchain within 15% of the hand-written step (where no case floor)
SGEMM_FLOOR = 0.70  # issue 17: the largest case's normal step at >= 70% of the sgemm rate
LR = 1e-3
# Pause before each timed block: OpenBLAS worker threads spin ~0.1 s after a call, and
# would otherwise compete with the next block's threads (PyTorch's, or OpenBLAS's own).
SETTLE = 0.15


# ---------------------------------------------------------------- hand-written numpy step
def make_numpy_step(weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray,
                    y: np.ndarray, lr: float) -> Callable[[bool], tuple[float, dict]]:
    """Forward, backward and SGD update of a ReLU / softmax + CE network, inline.

    Written as a careful hand would: work buffers, gradients and update scratch arrays
    allocated once, products through ``np.dot`` with ``out``, the same numpy idioms as
    nnchain (ones-vector sums, global-max softmax shift, zeros-array ReLU).
    """
    n, dtype = len(x), x.dtype
    n_layers = len(weights)
    ones_n = np.ones(n, dtype)
    ones_k = np.ones(weights[-1].shape[1], dtype)
    zs = [np.empty((n, w.shape[1]), dtype) for w in weights]
    deltas = [np.empty((n, w.shape[1]), dtype) for w in weights[:-1]]
    zeros = [np.zeros((n, w.shape[1]), dtype) for w in weights[:-1]]
    grads_w = [np.empty_like(w) for w in weights]
    grads_b = [np.empty_like(b) for b in biases]
    scratch_w = [np.empty_like(w) for w in weights]
    scratch_b = [np.empty_like(b) for b in biases]
    safe_span = 43.0 if dtype == np.float32 else 354.0

    def step(diagnostics: bool) -> tuple[float, dict]:
        acts = [x]
        a = x
        for i in range(n_layers - 1):
            z = np.dot(a, weights[i], out=zs[i])
            z += biases[i]
            a = np.maximum(z, zeros[i], out=z)
            acts.append(a)
        z = np.dot(a, weights[-1], out=zs[-1])
        z += biases[-1]
        high = z.max()
        shift = high if high - z.min() <= safe_span else z.max(axis=1, keepdims=True)
        shifted = z - shift
        e = np.exp(shifted)
        s = np.dot(e, ones_k)
        cost = float(np.log(s).sum() - np.vdot(y, shifted)) / n
        e /= s[:, None]
        dz = e - y
        dz *= 1 / n
        metrics = {}
        for i in range(n_layers - 1, -1, -1):
            w = weights[i]
            if diagnostics:
                metrics[f"delta{i}"] = math.sqrt(float(np.vdot(dz, dz))) * math.sqrt(n)
            grad_w = np.dot(acts[i].T, dz, out=grads_w[i])
            grad_b = np.dot(ones_n, dz, out=grads_b[i])
            if i > 0:
                w_t = np.ascontiguousarray(w.T) if w.size <= 16384 else w.T
                da = np.dot(dz, w_t, out=deltas[i - 1])
                dz = np.multiply(da, acts[i] > 0, out=da)
            if diagnostics:
                metrics[f"grad{i}"] = math.sqrt(float(np.vdot(grad_w, grad_w)))
                weight_norm = math.sqrt(float(np.vdot(w, w)))
                metrics[f"weight{i}"] = weight_norm
                if i > 0:
                    metrics[f"dead{i}"] = float(
                        np.count_nonzero(acts[i].max(axis=0) <= 0)) / acts[i].shape[1]
            update_w = np.multiply(grad_w, -lr, out=scratch_w[i])
            w += update_w
            biases[i] += np.multiply(grad_b, -lr, out=scratch_b[i])
            if diagnostics:
                metrics[f"ratio{i}"] = math.sqrt(float(np.vdot(update_w, update_w))) / weight_norm
        return cost, metrics

    return step


# ---------------------------------------------------------------- PyTorch step
def torch_model(weights: list[np.ndarray], biases: list[np.ndarray]):
    layers = []
    for w, b in zip(weights, biases, strict=True):
        linear = torch.nn.Linear(*w.shape, dtype=torch.from_numpy(w).dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(linear)
    return layers


def torch_step(layers, optimizer, x, labels, diagnostics: bool) -> tuple[float, dict]:
    optimizer.zero_grad(set_to_none=True)
    pre_activations, hidden = [], []
    a = x
    for i, linear in enumerate(layers):
        z = linear(a)
        if diagnostics:
            z.retain_grad()
            pre_activations.append(z)
        if i < len(layers) - 1:
            a = torch.relu(z)
            hidden.append(a)
    loss = torch.nn.functional.cross_entropy(z, labels)
    loss.backward()
    metrics = {}
    if not diagnostics:
        optimizer.step()
        return float(loss.detach()), metrics
    n = len(x)
    with torch.no_grad():
        before = [linear.weight.clone() for linear in layers]
        for i, linear in enumerate(layers):
            metrics[f"grad{i}"] = float(linear.weight.grad.norm())
            metrics[f"delta{i}"] = float(pre_activations[i].grad.norm()) * math.sqrt(n)
            metrics[f"weight{i}"] = float(before[i].norm())
        for i, a in enumerate(hidden, start=1):
            metrics[f"dead{i}"] = float((a.amax(dim=0) <= 0).float().mean())
        optimizer.step()
        for i, linear in enumerate(layers):
            metrics[f"ratio{i}"] = float((linear.weight - before[i]).norm()) / metrics[f"weight{i}"]
    return float(loss.detach()), metrics


# ---------------------------------------------------------------- timing
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def time_per_call(step: Callable[[], object], calls: int) -> float:
    start = clock()
    for _ in range(calls):
        step()
    return (clock() - start) / calls


def calls_for(seconds_per_call: float, budget: float = 0.05) -> int:
    return max(2, int(budget / seconds_per_call))


def matmul_rate(dtype: type, n: int = 512, k: int = 1024, m: int = 1024) -> float:
    """Best GFLOP/s of numpy's (n, k) @ (k, m) over a few runs: the machine's matmul rate."""
    a = np.random.default_rng(0).standard_normal((n, k)).astype(dtype)
    b = np.random.default_rng(1).standard_normal((k, m)).astype(dtype)
    a @ b
    best = min(time_per_call(lambda: a @ b, 5) for _ in range(7))
    return 2 * n * k * m / best / 1e9


def blas_threads() -> str:
    """numpy's BLAS library and thread count, as threadpoolctl sees them (if installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threads unknown (threadpoolctl not installed)"
    return ", ".join(f"{info['internal_api']} {info['num_threads']} threads"
                     for info in threadpool_info() if info["user_api"] == "blas") or "none"


def limit_threads(threads: int) -> None:
    """Run numpy's BLAS and PyTorch on ``threads`` threads each, for the whole process."""
    from threadpoolctl import threadpool_limits  # a benchmark-only dependency, as torch
    limit_threads.keep = threadpool_limits(limits=threads, user_api="blas")
    if torch is not None:
        torch.set_num_threads(threads)


def load_average() -> str:
    """The 1-minute load average (other processes skew timings on a small machine)."""
    try:
        return f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus"
    except OSError:
        return "unknown"


def step_flops(sizes: list[int], batch: int) -> int:
    """Multiply-adds x 2 of forward (x W), dW (x^T dz) and dx (dz W^T, not for layer 1)."""
    pairs = list(pairwise(sizes))
    forward = sum(d_in * d_out for d_in, d_out in pairs)
    backward_input = sum(d_in * d_out for d_in, d_out in pairs[1:])
    return 2 * batch * (2 * forward + backward_input)


def bench_case(sizes: list[int], batch: int, dtype: type, rounds: int) -> dict:
    rng = np.random.default_rng(0)
    network = build_network(sizes, activation="relu", output="softmax", cost="cross_entropy",
                            init="he_normal", rng=rng, dtype=dtype)
    optimizer = make_optimizer("sgd", network, lr=LR)
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    labels = rng.integers(0, sizes[-1], batch)
    y = np.eye(sizes[-1], dtype=dtype)[labels]
    start = network.get_weights()
    weights = [start[f"W{i}"].copy() for i in range(1, len(sizes))]
    biases = [start[f"b{i}"].copy() for i in range(1, len(sizes))]

    numpy_step = make_numpy_step(weights, biases, x, y, LR)
    steps: dict[str, dict[str, Callable[[], object]]] = {"normal": {}, "diagnostic": {}}
    for kind, diagnostics in (("normal", False), ("diagnostic", True)):
        steps[kind]["nnchain"] = (lambda d=diagnostics: train_step(
            network, optimizer, x, y, lr=LR, diagnostics=d))
        steps[kind]["numpy"] = (lambda d=diagnostics: numpy_step(d))
    if torch is not None:
        layers = torch_model(weights, biases)
        torch_optimizer = torch.optim.SGD([p for layer in layers for p in layer.parameters()],
                                          lr=LR)
        tx, tlabels = torch.from_numpy(x), torch.from_numpy(labels)
        for kind, diagnostics in (("normal", False), ("diagnostic", True)):
            steps[kind]["torch"] = (lambda d=diagnostics: torch_step(
                layers, torch_optimizer, tx, tlabels, d))

    result = {}
    for kind, impls in steps.items():
        calls = {}
        for name, step in impls.items():  # warm up, then size each timed block to ~50 ms
            for _ in range(3):
                step()
            calls[name] = calls_for(time_per_call(step, 3))
        times: dict[str, list[float]] = {name: [] for name in impls}
        names = list(impls)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                time.sleep(SETTLE)
                impls[name]()
                times[name].append(time_per_call(impls[name], calls[name]))
        result[kind] = {
            "time": {name: statistics.median(t) for name, t in times.items()},
            "best": {name: min(t) for name, t in times.items()},
            "ratio": {other: statistics.median(o / s for o, s in zip(times[other],
                                                                    times["nnchain"],
                                                                    strict=True))
                      for other in names if other != "nnchain"},
        }
    return result


ORDERS = ("output_first", "input_first")


def bench_orders(sizes: list[int], batch: int, dtype: type, rounds: int) -> dict[str, float]:
    """Median over rounds of (order's step time / simultaneous step time), per order."""
    rng = np.random.default_rng(0)
    network = build_network(sizes, activation="relu", output="softmax", cost="cross_entropy",
                            init="he_normal", rng=rng, dtype=dtype)
    optimizer = make_optimizer("sgd", network, lr=LR)
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], batch)]
    steps: dict[str, Callable[[], object]] = {
        "simultaneous": lambda: train_step(network, optimizer, x, y, lr=LR)}
    for order in ORDERS:
        steps[order] = (lambda o=order: layerwise_step(network, optimizer, x, y, lr=LR,
                                                       order=o))
    calls = {}
    for name, step in steps.items():
        for _ in range(3):
            step()
        calls[name] = calls_for(time_per_call(step, 3))
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(SETTLE)
            steps[name]()
            times[name].append(time_per_call(steps[name], calls[name]))
    return {"simultaneous_ms": statistics.median(times["simultaneous"]) * 1e3,
            **{order: statistics.median(o / s for o, s in zip(times[order],
                                                              times["simultaneous"],
                                                              strict=True))
               for order in ORDERS}}


def print_orders(cases: list, rounds: int) -> None:
    print(f"update orders: step (= epoch) time relative to simultaneous, median of {rounds} "
          "rounds")
    header = (f"{'network':<22}{'batch':>6}{'dtype':>8}{'layers':>7}{'simult. ms':>12}"
              + "".join(f"{order:>14}" for order in ORDERS))
    print(header)
    print("-" * len(header))
    for sizes, batch, dtype, *_ in cases:
        result = bench_orders(sizes, batch, dtype, rounds)
        print(f"{'-'.join(map(str, sizes)):<22}{batch:>6}{np.dtype(dtype).name:>8}"
              f"{len(sizes) - 1:>7}{result['simultaneous_ms']:12.3f}"
              + "".join(f"{result[order]:13.2f}x" for order in ORDERS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="5 rounds, for a smoke test")
    parser.add_argument("--case", type=int, action="append", choices=range(1, len(CASES) + 1),
                        help="run only this case (1-based, repeatable)")
    parser.add_argument("--orders-only", action="store_true",
                        help="only the update orders against the simultaneous step")
    parser.add_argument("--threads", type=int,
                        help="BLAS threads of numpy (through threadpoolctl) and PyTorch's "
                             "threads; default: both libraries' defaults")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="cpu: the process's CPU time, not wall time; with --threads 1 "
                             "it leaves out the time other processes hold the cores "
                             "(with more threads it counts their spin-waits)")
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else args.rounds
    global clock
    clock = CLOCKS[args.clock]
    if args.threads is not None:
        limit_threads(args.threads)
    if args.orders_only:
        print_orders([CASES[i - 1] for i in args.case] if args.case else CASES, rounds)
        return 0
    if torch is None:
        print("torch is not installed: skipping the PyTorch column", file=sys.stderr)
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    print(f"numpy's BLAS: {blas_threads()}", file=sys.stderr)
    print(f"numpy {np.__version__}; {args.clock} clock; median of {rounds} interleaved rounds; "
          "ratio = other time / nnchain time (> 1: nnchain faster)")
    print(f"load average at start: {load_average()}")
    header = (f"{'network':<22}{'batch':>6}{'dtype':>8}  {'step':<11}{'nnchain':>10}"
              f"{'numpy':>10}{'torch':>10}{'vs numpy':>10}{'vs torch':>10}  floors")
    print(header)
    print("-" * len(header))
    failures = []
    largest = None
    best_rows = []
    peak = matmul_rate(np.float32)
    cases = [CASES[i - 1] for i in args.case] if args.case else CASES
    for sizes, batch, dtype, torch_floor, numpy_floor in cases:
        result = bench_case(sizes, batch, dtype, rounds)
        name = "-".join(map(str, sizes))
        for kind in ("normal", "diagnostic"):
            best = result[kind]["best"]
            best_rows.append(f"{name:<22}{kind:<11}" + "".join(
                f"{other:>8} {best[other] / best['nnchain']:5.2f}x"
                for other in ("numpy", "torch") if other in best))
        for kind in ("normal", "diagnostic"):
            times, ratios = result[kind]["time"], result[kind]["ratio"]
            torch_time = f"{times['torch'] * 1e3:9.3f}" if "torch" in times else f"{'-':>9}"
            vs_torch = f"{ratios['torch']:9.2f}x" if "torch" in ratios else f"{'-':>10}"
            floor = numpy_floor if numpy_floor is not None and kind == "normal" \
                else NUMPY_FLOOR
            verdicts = [f"numpy>={floor:.2f}" + ("" if ratios["numpy"] >= floor else " MISSED")]
            if "torch" in ratios and kind == "normal":
                verdicts.append(f"torch>={torch_floor}"
                                + ("" if ratios["torch"] >= torch_floor else " MISSED"))
            failures += [f"{name} {kind}: {v}" for v in verdicts if v.endswith("MISSED")]
            print(f"{name:<22}{batch:>6}{np.dtype(dtype).name:>8}  {kind:<11}"
                  f"{times['nnchain'] * 1e3:9.3f} {times['numpy'] * 1e3:9.3f} {torch_time} "
                  f"{ratios['numpy']:9.2f}x{vs_torch}  {', '.join(verdicts)}")
        largest = (sizes, batch, result["normal"])
    print("(times in ms per step)")
    print("cross-check, fastest round of each (noise only adds time): other / nnchain")
    print("\n".join(best_rows))
    sizes, batch, normal = largest
    peak = max(peak, matmul_rate(np.float32))  # best of before and after the cases
    flops = step_flops(sizes, batch)
    print(f"largest case run, {'-'.join(map(str, sizes))} normal step: {flops / 1e9:.3g} GFLOP "
          f"per step; numpy float32 matmul (512x1024 @ 1024x1024) {peak:.1f} GFLOP/s")
    for name in ("nnchain", "torch"):
        if name not in normal["time"]:
            continue
        median_rate = flops / normal["time"][name] / 1e9
        best_rate = flops / normal["best"][name] / 1e9
        verdict = ""
        if name == "nnchain" and sizes == CASES[-1][0]:
            verdict = f"  floor >={SGEMM_FLOOR:.0%}" + (
                "" if median_rate / peak >= SGEMM_FLOOR else " MISSED")
            if median_rate / peak < SGEMM_FLOOR:
                failures.append(f"{'-'.join(map(str, sizes))} normal: sgemm rate "
                                f">={SGEMM_FLOOR:.0%} MISSED")
        print(f"  {name:<8} median {median_rate:6.1f} GFLOP/s = {median_rate / peak:4.0%} of "
              f"the matmul rate (fastest round {best_rate / peak:4.0%}){verdict}")
    print_orders(cases, rounds)
    print(f"load average at end: {load_average()}")
    if failures:
        print("floors missed: " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
