"""Artifacts of a trial run: final weights, the resolved config and a cost-curve plot."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml

from nnchain.weights import save_weights


def plot_costs(path: Path, history: Mapping[str, Sequence[float]], title: str) -> Path:
    """A PNG of the cost curves (one line per series, log scale when all values are > 0)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.subplots()
    positive = True
    for label, values in history.items():
        values = np.asarray(values, dtype=float)
        axes.plot(np.arange(len(values)), values, label=label)
        positive = positive and bool(np.all(values[np.isfinite(values)] > 0))
    if positive:
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("cost")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return path


def log_trial_artifacts(client, run_id: str, *, weights: Mapping[str, np.ndarray] | None,
                        config: Mapping, history: Mapping[str, Sequence[float]],
                        title: str) -> None:
    """Write weights.npz, config.yaml and cost_curve.png into the run's artifacts."""
    with tempfile.TemporaryDirectory(prefix="nnchain-") as tmp:
        folder = Path(tmp)
        if weights is not None:
            save_weights(folder / "weights.npz", weights)
        (folder / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
        if history and any(len(v) for v in history.values()):
            plot_costs(folder / "cost_curve.png", history, title)
        client.log_artifacts(run_id, str(folder))
