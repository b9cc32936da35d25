"""The training loop: convergence, determinism, resuming, divergence, metrics."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from nnchain.errors import DivergedError, SpecError
from nnchain.nn import EpochRecord, build_network, make_optimizer, make_schedule, train_epochs

from .datasets import XOR_X, XOR_Y, spirals


def spiral_network(seed: int, dtype=np.float64, **overrides):
    options = {"activation": "relu", "output": "softmax", "cost": "cross_entropy",
               "init": "he_normal", "rng": np.random.default_rng(seed), "dtype": dtype}
    options.update(overrides)
    return build_network([2, 32, 32, 2], **options)


def run(network, optimizer, x, y, **kwargs) -> list[EpochRecord]:
    return list(train_epochs(network, optimizer, x, y, **kwargs))


def test_xor_reaches_full_accuracy():
    network = build_network([2, 4, 1], activation="tanh", output="sigmoid", cost="bce",
                            init="glorot_uniform", rng=np.random.default_rng(1))
    optimizer = make_optimizer("sgd", network, lr=1.0)
    records = run(network, optimizer, XOR_X, XOR_Y, epochs=1000, batch_size=None,
                  rng=np.random.default_rng(0), accuracy=True)
    assert records[-1].metrics["train_accuracy"] == 1.0
    np.testing.assert_array_equal(network.predict(XOR_X) > 0.5, XOR_Y > 0.5)
    assert records[-1].metrics["train_cost"] < records[0].metrics["train_cost"] / 10


def test_spirals_above_95_percent():
    x, y = spirals(200, np.random.default_rng(0))
    network = spiral_network(1)
    optimizer = make_optimizer("momentum", network, lr=0.1)
    records = run(network, optimizer, x, y, epochs=300, batch_size=32,
                  rng=np.random.default_rng(2), accuracy=True, diagnostics=False)
    assert records[-1].metrics["train_accuracy"] > 0.95
    predicted = network.predict(x).argmax(axis=1)
    assert np.mean(predicted == y.argmax(axis=1)) > 0.95


@pytest.mark.parametrize("batch_size", [None, 16])
def test_same_seed_gives_bit_identical_weights(batch_size):
    x, y = spirals(50, np.random.default_rng(0))
    results = []
    for _ in range(2):
        network = spiral_network(3)
        optimizer = make_optimizer("adam", network, lr=0.01)
        records = run(network, optimizer, x, y, epochs=15, batch_size=batch_size,
                      rng=np.random.default_rng(4))
        results.append((network.get_weights(), records))
    (first, first_records), (second, second_records) = results
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert [r.metrics for r in first_records] == [r.metrics for r in second_records]


def test_different_shuffle_seed_changes_the_run():
    x, y = spirals(50, np.random.default_rng(0))
    weights = []
    for seed in (4, 5):
        network = spiral_network(3)
        run(network, make_optimizer("sgd", network, lr=0.1), x, y, epochs=3, batch_size=16,
            rng=np.random.default_rng(seed))
        weights.append(network.get_weights()["W1"])
    assert not np.array_equal(*weights)


@pytest.mark.parametrize("optimizer_name", ["momentum", "adam"])
def test_resume_from_checkpoint_is_bit_identical(optimizer_name):
    x, y = spirals(50, np.random.default_rng(0))
    schedule = make_schedule("cosine", 0.05, epochs=10)

    straight = spiral_network(5)
    straight_optimizer = make_optimizer(optimizer_name, straight, lr=0.05)
    expected = run(straight, straight_optimizer, x, y, epochs=10, batch_size=16,
                   rng=np.random.default_rng(6), schedule=schedule)

    first = spiral_network(5)
    first_optimizer = make_optimizer(optimizer_name, first, lr=0.05)
    rng = np.random.default_rng(6)
    head = run(first, first_optimizer, x, y, epochs=5, batch_size=16, rng=rng,
               schedule=schedule)
    checkpoint = (first.get_weights(), first_optimizer.state_dict(), rng.bit_generator.state)

    resumed = spiral_network(99)  # fresh objects, different initial weights
    resumed_optimizer = make_optimizer(optimizer_name, resumed, lr=0.05)
    resumed_rng = np.random.default_rng(12345)
    resumed.set_weights(checkpoint[0])
    resumed_optimizer.load_state_dict(checkpoint[1])
    resumed_rng.bit_generator.state = checkpoint[2]
    tail = run(resumed, resumed_optimizer, x, y, epochs=10, batch_size=16, rng=resumed_rng,
               schedule=schedule, start_epoch=5)

    assert [r.epoch for r in head + tail] == list(range(10))
    assert [r.metrics for r in head + tail] == [r.metrics for r in expected]
    for key, array in straight.get_weights().items():
        np.testing.assert_array_equal(resumed.get_weights()[key], array)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_raises_with_the_epoch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3)) * 10
    y = rng.standard_normal((32, 1))
    network = build_network([3, 8, 1], activation="identity", output="identity", cost="mse",
                            init="he_normal", rng=np.random.default_rng(1))
    optimizer = make_optimizer("sgd", network, lr=5.0)
    records = []
    with pytest.raises(DivergedError) as error:
        for record in train_epochs(network, optimizer, x, y, epochs=100, batch_size=None,
                                   rng=rng):
            records.append(record)
    assert error.value.epoch == len(records) > 0  # 0-based: the epoch after the last record
    assert not math.isfinite(error.value.cost)
    assert all(math.isfinite(r.metrics["train_cost"]) for r in records)


def test_metrics_keys_and_values():
    x, y = spirals(40, np.random.default_rng(0))
    network = spiral_network(7)
    optimizer = make_optimizer("sgd", network, lr=0.1)
    records = run(network, optimizer, x, y, epochs=3, batch_size=32,
                  rng=np.random.default_rng(8), x_val=x[:20], y_val=y[:20], accuracy=True,
                  schedule=make_schedule("step", 0.1, epochs=3, step_size=1))
    assert [r.epoch for r in records] == [0, 1, 2]
    assert [r.lr for r in records] == pytest.approx([0.1, 0.05, 0.025])
    expected = {"train_cost", "val_cost", "train_accuracy", "val_accuracy", "lr"}
    for kind in ("grad_norm", "delta_norm", "weight_norm", "update_ratio"):
        expected |= {f"{kind}/layer{i}" for i in (1, 2, 3)}
    expected |= {"dead_fraction/layer1", "dead_fraction/layer2"}  # relu layers only
    for record in records:
        assert set(record.metrics) == expected
        assert record.metrics["lr"] == record.lr
        assert all(type(v) is float for v in record.metrics.values())
        assert 0 <= record.metrics["train_accuracy"] <= 1
    # val metrics are measured at the end of the epoch
    last = records[-1].metrics
    assert last["val_cost"] == pytest.approx(network.loss(x[:20], y[:20]), rel=1e-12)
    quiet = run(spiral_network(7), make_optimizer("sgd", spiral_network(7), lr=0.1), x, y,
                epochs=1, batch_size=None, rng=np.random.default_rng(8), diagnostics=False)
    assert set(quiet[0].metrics) == {"train_cost", "lr"}


def test_train_cost_is_the_batch_weighted_mean_without_extra_passes():
    """With lr ~ 0 the weights stay put, so the epoch cost equals the full-set cost."""
    x, y = spirals(45, np.random.default_rng(0))  # 90 samples: batches of 32, 32, 26
    network = spiral_network(9)
    optimizer = make_optimizer("sgd", network, lr=1e-300)
    record = run(network, optimizer, x, y, epochs=1, batch_size=32,
                 rng=np.random.default_rng(1))[0]
    assert record.metrics["train_cost"] == pytest.approx(network.loss(x, y), rel=1e-12)


def test_diagnostics_on_a_constructed_case():
    """Hidden units 1 and 2 of 4 are dead on every (positive) input; the norms follow their
    definitions on the last batch."""
    network = build_network([2, 4, 1], activation="relu", output="identity", cost="mse",
                            init="he_normal", rng=np.random.default_rng(0))
    network.set_weights({
        "W1": np.array([[1.0, -1.0, -2.0, 0.5], [1.0, -1.0, -1.0, 0.5]]),
        "b1": np.array([0.0, -0.1, 0.0, 0.1]),
        "W2": np.array([[1.0], [1.0], [1.0], [-1.0]]), "b2": np.array([0.0]),
    })
    x = np.random.default_rng(1).uniform(0.1, 1.0, (8, 2))
    y = np.ones((8, 1))
    lr = 0.01
    before = network.get_weights()

    # the same batch by hand: z1 = x W1 + b1, a1 = relu(z1), p = a1 W2 + b2
    z1 = x @ before["W1"] + before["b1"]
    a1 = np.maximum(z1, 0)
    dz2 = (a1 @ before["W2"] + before["b2"] - y) / 8
    dz1 = (dz2 @ before["W2"].T) * (z1 > 0)
    dW1, dW2 = x.T @ dz1, a1.T @ dz2

    optimizer = make_optimizer("sgd", network, lr=lr)
    metrics = run(network, optimizer, x, y, epochs=1, batch_size=None,
                  rng=np.random.default_rng(2))[0].metrics
    assert metrics["dead_fraction/layer1"] == 0.5
    assert "dead_fraction/layer2" not in metrics  # identity output
    assert metrics["grad_norm/layer1"] == pytest.approx(np.linalg.norm(dW1))
    assert metrics["grad_norm/layer2"] == pytest.approx(np.linalg.norm(dW2))
    # delta_norm: RMS over samples of the per-sample error signal = sqrt(n) ||dL/dz||_F
    assert metrics["delta_norm/layer2"] == pytest.approx(np.sqrt(8) * np.linalg.norm(dz2))
    assert metrics["delta_norm/layer1"] == pytest.approx(np.sqrt(8) * np.linalg.norm(dz1))
    assert metrics["weight_norm/layer1"] == pytest.approx(np.linalg.norm(before["W1"]))
    assert metrics["update_ratio/layer1"] == pytest.approx(
        lr * np.linalg.norm(dW1) / np.linalg.norm(before["W1"]))


def test_diagnostics_are_from_the_last_batch_only(monkeypatch):
    x, y = spirals(40, np.random.default_rng(0))
    network = spiral_network(7)
    calls = []
    original = network.forward_backward

    def spy(xb, yb, **kwargs):
        calls.append((len(xb), bool(kwargs.get("diagnostics", False))))
        return original(xb, yb, **kwargs)

    monkeypatch.setattr(network, "forward_backward", spy)
    run(network, make_optimizer("sgd", network, lr=0.1), x, y, epochs=2, batch_size=32,
        rng=np.random.default_rng(1))
    assert calls == [(32, False), (32, False), (16, True)] * 2


@pytest.mark.parametrize("kinds", [("grad_norm",), ("update_ratio",),
                                   ("delta_norm", "dead_fraction"), ("weight_norm",)])
def test_only_the_diagnostics_asked_for_are_computed(monkeypatch, kinds):
    """Each kind alone gives exactly its keys, with the values a run of every kind gives;
    no norm of another kind is computed (the optimizer's update norms only for
    update_ratio)."""
    x, y = spirals(40, np.random.default_rng(0))
    records = {}
    for asked in (True, kinds):
        network = spiral_network(7)
        optimizer = make_optimizer("adam", network, lr=0.01)
        steps = []
        step = optimizer.step

        def spy(*args, _step=step, _steps=steps, **kwargs):
            _steps.append(kwargs.get("update_norms", False))
            return _step(*args, **kwargs)

        monkeypatch.setattr(optimizer, "step", spy)
        records[asked] = run(network, optimizer, x, y, epochs=3, batch_size=16,
                             rng=np.random.default_rng(1), diagnostics=asked)
        assert any(steps) == (asked is True or "update_ratio" in asked)
    for full, only in zip(records[True], records[kinds], strict=True):
        expected = {k: v for k, v in full.metrics.items()
                    if "/" not in k or k.split("/")[0] in kinds}
        assert only.metrics == expected
        assert {k.split("/")[0] for k in only.metrics if "/" in k} == set(kinds)


def test_float32_training_stays_float32():
    x, y = spirals(40, np.random.default_rng(0))
    network = spiral_network(3, dtype=np.float32)
    optimizer = make_optimizer("adam", network, lr=0.01, weight_decay=1e-4)
    records = run(network, optimizer, x, y, epochs=3, batch_size=16,
                  rng=np.random.default_rng(1), x_val=x, y_val=y, accuracy=True)
    assert network.params.values.dtype == np.float32
    assert network.params.grads.dtype == np.float32
    assert all(v.dtype == np.float32 for k, v in optimizer.state_dict().items() if k != "t")
    assert all(type(v) is float for v in records[-1].metrics.values())
    assert network.predict(x).dtype == np.float32


@pytest.mark.parametrize("kwargs, field", [
    ({"x": np.zeros((5, 3))}, "x"),
    ({"y": np.zeros((5, 3))}, "y"),
    ({"x_val": np.zeros((2, 2))}, "x_val"),
    ({"epochs": 3, "start_epoch": 4}, "epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"y": np.ones((5, 2))}, "y"),  # softmax + cross_entropy targets must sum to 1
])
def test_inputs_are_validated_before_the_first_epoch(kwargs, field):
    network = spiral_network(0)
    arguments = {"x": np.zeros((5, 2)), "y": np.eye(2)[[0, 1, 0, 1, 1]], "epochs": 3,
                 "batch_size": None, "rng": np.random.default_rng(0)}
    arguments.update(kwargs)
    x, y = arguments.pop("x"), arguments.pop("y")
    with pytest.raises(SpecError) as error:
        train_epochs(network, make_optimizer("sgd", network, lr=0.1), x, y, **arguments)
    assert error.value.field == field


def test_network_and_optimizer_pickle_together_and_keep_training_identically():
    x, y = spirals(30, np.random.default_rng(0))
    network = spiral_network(1)
    optimizer = make_optimizer("adam", network, lr=0.01)
    run(network, optimizer, x, y, epochs=2, batch_size=16, rng=np.random.default_rng(2))
    copy_network, copy_optimizer = pickle.loads(pickle.dumps((network, optimizer)))
    assert copy_optimizer.params is copy_network.params
    assert np.shares_memory(copy_network.layers[0].params["W"], copy_network.params.values)
    for net, opt in ((network, optimizer), (copy_network, copy_optimizer)):
        run(net, opt, x, y, epochs=2, batch_size=16, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(copy_network.params.values, network.params.values)
