"""The report's numbers and page from plain rows, without Ray or a store."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnchain.report.html import report_files
from nnchain.report.query import Loaded, SweepInfo
from nnchain.report.summary import build_summary, curve_of


def row(index: int, state: str, lr: float, seed: int, final: float | None,
        activation: str = "tanh") -> dict:
    return {"sweep": "s", "sweep_id": "abc123abc123", "metric_name": "val_cost",
            "index": index, "key": f"k{index}", "repeat": seed, "state": state,
            "reason": "" if state == "FINISHED" else "diverged at epoch 3", "run_id": f"r{index}",
            "attempt": 0, "epochs": 3, "train_seconds": 0.1, "metric": final,
            "params": {"train.lr": lr, "seed": seed, "model.activation": activation},
            "overrides": {"train.lr": lr, "model.activation": activation, "seed": seed},
            "summary": {"val_cost": {"last": final, "min": final, "max": final},
                        "train_cost": {"last": 0.5, "min": 0.5, "max": 0.5}}}


def loaded(rows) -> Loaded:
    return Loaded([SweepInfo("abc123abc123", "s", "val_cost", "minimize", "FAILED", len(rows))],
                  rows)


def test_curve_mean_std_over_curves_of_different_lengths():
    curve = curve_of([np.array([1.0, 2.0, 3.0]), np.array([3.0, np.nan]), np.array([5.0])])
    np.testing.assert_allclose(curve.mean, [3.0, 2.0, 3.0])
    assert curve.count.tolist() == [3, 1, 1]
    assert curve.std[0] == pytest.approx(2.0) and math.isnan(curve.std[1])


def test_failed_trials_rank_last_and_never_best():
    rows = [row(0, "FINISHED", 0.1, 1, 0.5), row(1, "FAILED", 10.0, 1, None),
            row(2, "FINISHED", 0.1, 2, 0.3), row(3, "FAILED", 10.0, 2, None)]
    rows[1]["summary"]["train_cost"]["last"] = 0.0  # a failed trial's own last value
    histories = {"r0": {"val_cost": np.array([0.9, 0.5])},
                 "r2": {"val_cost": np.array([0.7, 0.3])},
                 "r1": {"val_cost": np.array([0.9, np.inf])}}
    for metric in ("val_cost", "train_cost"):
        summary = build_summary(loaded(rows), experiment_id="1", parent_run_id="p",
                                histories=histories, metric=metric, group_by=["train.lr"])
        assert {r["index"] for r in summary.ranked[:2]} == {0, 2}
        assert summary.best["state"] == "FINISHED"
    summary = build_summary(loaded(rows), experiment_id="1", parent_run_id="p",
                            histories=histories, metric="val_cost", group_by=["train.lr"])
    assert summary.best["index"] == 2
    finished, failed = summary.groups
    assert finished.final["mean"] == pytest.approx(0.4) and finished.final["count"] == 2
    np.testing.assert_allclose(finished.curves["val_cost"].mean, [0.8, 0.4])
    assert failed.final["count"] == 0 and "val_cost" not in failed.curves


def test_report_page_escapes_values_and_embeds_every_picture():
    rows = [row(0, "FINISHED", 0.1, 1, 0.5, activation="<script>x</script>"),
            row(1, "FINISHED", 0.2, 1, 0.4)]
    summary = build_summary(loaded(rows), experiment_id="1", parent_run_id="p",
                            histories={}, metric="val_cost",
                            group_by=["train.lr", "model.activation"])
    files = report_files(summary, b"index\n")
    page = files["report.html"].decode()
    assert "<script>" not in page and "&lt;script&gt;" in page
    pictures = [name for name in files if name.endswith(".png")]
    assert page.count("data:image/png;base64,") == len(pictures) >= 3


def test_tracked_effects_get_their_own_heatmap_of_layer_means():
    """``effect/layer{k}`` (train.track: effect) averaged per group and layer like the
    gradient norms, drawn as effect_flow.png and embedded; a sweep without it has none."""
    rows = [row(0, "FINISHED", 0.1, 1, 0.5), row(1, "FINISHED", 0.1, 2, 0.4)]
    histories = {"r0": {"effect/layer1": np.array([0.4, 0.2]),
                        "effect/layer2": np.array([0.1, -0.1]),
                        "grad_norm/layer1": np.array([1.0, 0.5])},
                 "r1": {"effect/layer1": np.array([0.2, 0.1]),
                        "effect/layer2": np.array([0.3, 0.1])}}
    summary = build_summary(loaded(rows), experiment_id="1", parent_run_id="p",
                            histories=histories, metric="val_cost", group_by=["train.lr"])
    (group,) = summary.groups  # layer 2, epoch 2: a rise (-0.1) and a drop (0.1)
    np.testing.assert_allclose(group.effect, [[0.3, 0.15], [0.2, 0.0]], atol=1e-15)
    np.testing.assert_allclose(group.gradient, [[1.0, 0.5]])
    files = report_files(summary, b"index\n")
    assert files["effect_flow.png"].startswith(b"\x89PNG")
    assert "<h2>Each layer's effect on the cost</h2>" in files["report.html"].decode()
    plain = build_summary(loaded(rows), experiment_id="1", parent_run_id="p",
                          histories={"r0": {"grad_norm/layer1": np.array([1.0])}},
                          metric="val_cost", group_by=["train.lr"])
    assert plain.groups[0].effect is None
    assert "effect_flow.png" not in report_files(plain, b"index\n")


def test_one_curve_is_its_own_mean_without_a_std():
    values = np.array([0.5, -0.0, np.nan, np.inf, 2.0])
    one = curve_of([values])
    general = curve_of([values, np.full(len(values), np.nan)])  # the same finite values
    np.testing.assert_array_equal(one.mean, general.mean)
    assert np.signbit(one.mean[1]) and np.isnan(one.std).all()
    assert one.count.dtype == general.count.dtype and one.count.tolist() == [1, 1, 0, 0, 1]


@pytest.mark.parametrize("value", [
    {}, [], {"a": [1, 2.5, None], "b": {}, "c": [], "d": {"x": [[16, 16], [4]]},
             "e": "é\n\"", "f": True, "g": None, "h": 1e-300, "i": [True, 1]},
    {1: 2, False: 3, None: 4, 2.5: 5}, [{"a": 1}, [1, [2]]], 0.1, "s", (1, 2),
    {"final": {"mean": None, "std": 0.1, "count": 0}}])
@pytest.mark.parametrize("pad", ["", "  "])
def test_summary_json_text_is_json_dumps_own(value, pad):
    import json

    from nnchain.report.summary_json import indented

    lines = json.dumps(value, indent=1, allow_nan=False).split("\n")
    assert indented(value, pad) == "\n".join([lines[0], *(pad + line for line in lines[1:])])


def test_summary_json_refuses_what_json_dumps_refuses():
    from nnchain.report.summary_json import indented

    with pytest.raises(ValueError):
        indented({"a": [float("nan")]})
    with pytest.raises(ValueError):
        indented({"a": float("inf")})
