"""Benchmark: the simultaneous SGD step of the four engine networks, two nnchain trees.

    git worktree add /tmp/before REV
    python benchmarks/step_versions.py /tmp/before . [--rounds 6]

Each round times both trees, alternating which goes first, each in a fresh process (two
packages named nnchain cannot share one): per network the median over 9 blocks of
~50 ms of ``train_step`` calls (ReLU, softmax + cross-entropy, one fixed batch, the same
networks and batches as ``engine.py``). Prints each tree's median step time and the
median and per-round ratio of after / before.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = """
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from nnchain.nn import build_network, make_optimizer, train_step
CASES = [([2, 16, 16, 2], 512, np.float64), ([64, 128, 64, 10], 32, np.float32),
         ([784, 256, 128, 10], 128, np.float32), ([784, 1024, 1024, 10], 512, np.float32)]
out = {}
for sizes, batch, dtype in CASES:
    rng = np.random.default_rng(0)
    net = build_network(sizes, activation="relu", output="softmax", cost="cross_entropy",
                        init="he_normal", rng=rng, dtype=dtype)
    opt = make_optimizer("sgd", net, lr=1e-3)
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], batch)]
    for _ in range(3):
        train_step(net, opt, x, y, lr=1e-3)
    start = time.perf_counter()
    train_step(net, opt, x, y, lr=1e-3)
    calls = max(3, int(0.05 / max(time.perf_counter() - start, 1e-6)))
    blocks = []
    for _ in range(9):
        time.sleep(0.1)  # OpenBLAS threads spin after a call
        start = time.perf_counter()
        for _ in range(calls):
            train_step(net, opt, x, y, lr=1e-3)
        blocks.append((time.perf_counter() - start) / calls)
    out["-".join(map(str, sizes))] = statistics.median(blocks)
print(json.dumps(out))
"""


def timed(tree: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, tree], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for r in range(args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for name in order:
            runs[name].append(timed(getattr(args, name)))
    print(f"{'network':<18} {'before ms':>10} {'after ms':>10} {'after/before':>13}  per round")
    for key in runs["before"][0]:
        ratios = [a[key] / b[key] for b, a in zip(runs["before"], runs["after"], strict=True)]
        print(f"{key:<18} {statistics.median(b[key] for b in runs['before']) * 1e3:>10.3f} "
              f"{statistics.median(a[key] for a in runs['after']) * 1e3:>10.3f} "
              f"{statistics.median(ratios):>13.3f}  " + " ".join(f"{x:.2f}" for x in ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
