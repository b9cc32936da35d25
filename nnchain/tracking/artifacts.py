"""Artifacts of a trial run: final weights, the resolved config and two pictures.

- ``cost_curve.png``: train and validation cost per epoch;
- ``gradient_flow.png``: each layer's gradient norm ``grad_norm/layer{i}`` (solid) and
  backward error-signal norm ``delta_norm/layer{i}`` (thin) per epoch on one log axis,
  layers coloured input side (dark) to output side (light).

``trial_files`` makes them as bytes, which is what a sweep's worker sends to the driver.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml

from nnchain.tracking import plots
from nnchain.weights import save_weights

CONFIG_FILE = "config.yaml"
COST_CURVE = "cost_curve.png"
GRADIENT_FLOW = "gradient_flow.png"
COST_KEYS = ("train_cost", "val_cost")
_LAYER_KEY = re.compile(r"^(grad_norm|delta_norm)/layer(\d+)$")


def wanted_key(key: str) -> bool:
    """Whether the trial pictures use the metric ``key``."""
    return key in COST_KEYS or _LAYER_KEY.match(key) is not None


def layer_keys(keys) -> dict[str, list[tuple[int, str]]]:
    """``{"grad_norm": [(1, "grad_norm/layer1"), ...], "delta_norm": [...]}`` by layer."""
    found: dict[str, list[tuple[int, str]]] = {"grad_norm": [], "delta_norm": []}
    for key in keys:
        match = _LAYER_KEY.match(key)
        if match:
            found[match.group(1)].append((int(match.group(2)), key))
    return {kind: sorted(pairs) for kind, pairs in found.items()}


# libyaml's emitter when PyYAML has it: the same text, a quarter of the time (every trial
# writes one in its worker)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def config_yaml(config: Mapping) -> bytes:
    return yaml.dump(dict(config), Dumper=_DUMPER, sort_keys=False).encode()


def cost_curve_png(history: Mapping[str, Sequence[float]], title: str,
                   first_epoch: int = 0) -> bytes:
    """Train and validation cost per epoch; log axis when every value is > 0."""
    series = {key: np.asarray(history[key], dtype=float) for key in COST_KEYS
              if key in history and len(history[key])}
    positive = all(np.all(v[np.isfinite(v)] > 0) for v in series.values())
    chart = plots.Chart(title, "epoch", "cost", ylog=bool(series) and positive)
    for colour, (key, values) in zip(((31, 119, 180), (255, 127, 14)), series.items(),
                                     strict=False):
        chart.line(first_epoch + np.arange(len(values)), values, colour, key)
    return chart.png()


def gradient_flow_png(history: Mapping[str, Sequence[float]], title: str,
                      first_epoch: int = 0) -> bytes:
    """Per-layer gradient norm (thick) and error-signal norm (thin) per epoch, log axis."""
    pairs = layer_keys(history)
    layers = sorted({layer for kind in pairs.values() for layer, _ in kind})
    colours = dict(zip(layers, plots.ramp(len(layers)), strict=True))
    chart = plots.Chart(f"{title}: gradient flow", "epoch",
                        "norm (thick: gradient ||dL/dW||, thin: error signal ||delta||)", ylog=True,
                        note="no gradient norms tracked (train.track)")
    for kind, thin in (("grad_norm", False), ("delta_norm", True)):
        for layer, key in pairs[kind]:
            values = np.asarray(history[key], dtype=float)
            label = f"layer{layer}" if not thin or not pairs["grad_norm"] else ""
            chart.line(first_epoch + np.arange(len(values)), values, colours[layer], label,
                       thin=thin)
    return chart.png()


def trial_files(config: Mapping, history: Mapping[str, Sequence[float]], title: str,
                first_epoch: int = 0, pictures: bool = True) -> dict[str, bytes]:
    """config.yaml, and (``pictures``) cost_curve.png and gradient_flow.png, as bytes."""
    files = {CONFIG_FILE: config_yaml(config)}
    if pictures:
        try:
            files.update(trial_pictures(history, title, first_epoch))
        except Exception:  # noqa: BLE001 - a picture that cannot be drawn never costs a result
            pass
    return files


def trial_pictures(history: Mapping[str, Sequence[float]], title: str,
                   first_epoch: int = 0) -> dict[str, bytes]:
    """cost_curve.png and gradient_flow.png as bytes (none without any values)."""
    if not any(len(values) for values in history.values()):
        return {}
    return {COST_CURVE: cost_curve_png(history, title, first_epoch),
            GRADIENT_FLOW: gradient_flow_png(history, title, first_epoch)}


def plot_costs(path: Path, history: Mapping[str, Sequence[float]], title: str) -> Path:
    """A PNG of the cost curves at ``path``."""
    path.write_bytes(cost_curve_png(history, title))
    return path


def log_trial_artifacts(client, run_id: str, *, weights: Mapping[str, np.ndarray] | None,
                        config: Mapping, history: Mapping[str, Sequence[float]],
                        title: str) -> None:
    """Write weights.npz, config.yaml and the pictures into the run's artifacts."""
    with tempfile.TemporaryDirectory(prefix="nnchain-") as tmp:
        folder = Path(tmp)
        if weights is not None:
            save_weights(folder / "weights.npz", weights)
        for name, payload in trial_files(config, history, title).items():
            (folder / name).write_bytes(payload)
        client.log_artifacts(run_id, str(folder))
