"""A trial's artifacts as its worker makes them: config.yaml and two valid PNG pictures."""

from __future__ import annotations

import io

import numpy as np
import yaml
from PIL import Image

from nnchain.tracking import plots
from nnchain.tracking.artifacts import (
    COST_CURVE,
    GRADIENT_FLOW,
    trial_files,
    trial_pictures,
    wanted_key,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(payload: bytes) -> tuple[int, int]:
    """The picture's size, after Pillow has decoded every pixel (a broken PNG raises)."""
    assert payload.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(payload))
    image.load()
    assert image.format == "PNG"
    return image.size


def history(epochs: int = 40, layers: int = 3) -> dict[str, list[float]]:
    steps = np.arange(epochs)
    data = {"train_cost": (1.0 / (1 + steps)).tolist(), "val_cost": (1.2 / (1 + steps)).tolist()}
    for layer in range(1, layers + 1):
        data[f"grad_norm/layer{layer}"] = (10.0 ** -layer * np.exp(-steps / 20)).tolist()
        data[f"delta_norm/layer{layer}"] = (10.0 ** -layer * np.ones(epochs)).tolist()
    return data


def test_trial_files_are_config_and_valid_pictures():
    config = {"seed": 3, "model": {"hidden": [16, 16]}, "train": {"lr": 0.1}}
    files = trial_files(config, history(), "t012 lr=0.1 hidden=[16,16]")
    assert set(files) == {"config.yaml", COST_CURVE, GRADIENT_FLOW}
    assert yaml.safe_load(files["config.yaml"]) == config
    for name in (COST_CURVE, GRADIENT_FLOW):
        assert png_size(files[name]) == (640, 400)


def test_gradient_flow_colours_layers_input_to_output():
    """Each layer's line is drawn in its colour of the ramp, dark input to light output."""
    picture = Image.open(io.BytesIO(trial_pictures(history(layers=4), "t000")[GRADIENT_FLOW]))
    pixels = np.asarray(picture.convert("RGB")).reshape(-1, 3)
    colours = {tuple(int(c) for c in colour) for colour in pixels}
    ramp = plots.ramp(4)
    assert all(colour in colours for colour in ramp)
    brightness = [sum(colour) for colour in ramp]
    assert brightness == sorted(brightness)


def test_missing_values_and_no_gradients_still_draw():
    data = {"train_cost": [1.0, float("nan"), 0.5, float("inf"), 0.2]}
    pictures = trial_pictures(data, "t001 lr=10 (diverged)")
    assert {COST_CURVE, GRADIENT_FLOW} <= set(pictures)
    for payload in pictures.values():
        png_size(payload)
    assert trial_pictures({}, "t002") == {}
    assert trial_files({"seed": 1}, data, "t", pictures=False).keys() == {"config.yaml"}


def test_only_curve_keys_are_kept():
    assert wanted_key("train_cost") and wanted_key("grad_norm/layer12")
    assert wanted_key("delta_norm/layer1")
    assert not wanted_key("weight_norm/layer1") and not wanted_key("lr")


def test_log_ticks_and_decades():
    assert plots.log_ticks(1e-8, 10) == [1e-8, 1e-6, 1e-4, 1e-2, 1.0]
    assert len(plots.log_ticks(0.6, 0.75)) >= 3
    assert plots.spans_decades([0.001, 0.1]) and not plots.spans_decades([1, 50])
    assert not plots.spans_decades([0, 10, 1000])


def test_a_diverged_trial_is_drawn():
    """Values up to 1e308, infinities and subnormals: both pictures drawn, axes finite."""
    data = {"train_cost": [1e89, float("inf"), 1e308], "val_cost": [float("nan")],
            "grad_norm/layer1": [1e200, float("inf"), 1e-300],
            "delta_norm/layer1": [2.7e89, 1e300, 5e-324]}
    pictures = trial_pictures(data, "t004 lr=1e+30")
    assert set(pictures) == {COST_CURVE, GRADIENT_FLOW}
    for payload in pictures.values():
        png_size(payload)
    flat = plots.Chart("flat")
    flat.line([0, 1], [3, 3], (0, 0, 0))
    png_size(flat.png())


def test_png_encoder_keeps_every_pixel():
    """nnchain writes its own PNG (no row filter); Pillow and zlib's checksums read it back
    pixel for pixel, from an RGB and from an RGBA (banded) chart."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    translucent = np.dstack([noise, np.full((37, 53), 255, np.uint8)])
    for image in (Image.fromarray(noise, "RGB"), Image.fromarray(translucent, "RGBA")):
        decoded = Image.open(io.BytesIO(plots._encode(image)))
        decoded.load()
        assert decoded.mode == "RGB" and decoded.size == (53, 37)
        assert np.array_equal(np.asarray(decoded), noise)
