"""Update orders against a plain loop written here: per layer, a forward pass, the engine's
gradient of that layer (checked against central differences), the update."""

from __future__ import annotations

import numpy as np
import pytest

from nnchain.errors import SpecError
from nnchain.nn import OPTIMIZERS, build_network, make_optimizer, train_epochs
from nnchain.nn.gradcheck import check_network, numeric_gradient

SIZES = [3, 5, 4, 2]
N, BATCH, EPOCHS = 13, 5, 3  # batches of 5, 5, 3


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, SIZES[0]))
    y = np.eye(2)[rng.integers(0, 2, N)]
    return x, y


def network(activation: str = "tanh"):
    return build_network(SIZES, activation=activation, output="softmax",
                         cost="cross_entropy", init="glorot_uniform",
                         rng=np.random.default_rng(7))


class PlainSGD:
    def __init__(self, lr: float) -> None:
        self.lr = lr

    def update(self, name: str, grad: np.ndarray, t: int) -> np.ndarray:
        return -self.lr * grad


class PlainAdam:
    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def update(self, name: str, grad: np.ndarray, t: int) -> np.ndarray:
        m = self.m[name] = self.beta1 * self.m.get(name, 0) + (1 - self.beta1) * grad
        v = self.v[name] = self.beta2 * self.v.get(name, 0) + (1 - self.beta2) * grad * grad
        m_hat, v_hat = m / (1 - self.beta1 ** t), v / (1 - self.beta2 ** t)
        return -self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def layer_gradient(net, x: np.ndarray, y: np.ndarray, layer: int,
                   check: bool) -> dict[str, np.ndarray]:
    """Layer ``layer``'s gradient from a full forward and backward pass of the engine at the
    current weights, checked against central differences when ``check``."""
    net.forward_backward(x, y)
    grads = {kind: net.layers[layer - 1].grads[kind].copy() for kind in ("W", "b")}
    if check:
        for kind, grad in grads.items():
            numeric = numeric_gradient(lambda: net.loss(x, y),
                                       net.layers[layer - 1].params[kind])
            np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    return grads


def plain_loop(order: str, optimizer, layer_lr=None) -> tuple[dict, list[float]]:
    """The reference: returns the final weights and each epoch's train cost."""
    x, y = data()
    net = network()
    rng = np.random.default_rng(3)
    layers = {"output_first": [3, 2, 1], "input_first": [1, 2, 3],
              "simultaneous": [None]}[order]
    t, costs = 0, []
    for _ in range(EPOCHS):
        permutation = rng.permutation(N)
        total = 0.0
        for start in range(0, N, BATCH):
            index = permutation[start:start + BATCH]
            xb, yb = x[index], y[index]
            total += net.loss(xb, yb) * len(xb)
            t += 1
            check = start == 0  # central differences on each epoch's first batch
            if order == "simultaneous":
                grads = {k: layer_gradient(net, xb, yb, k, check) for k in (1, 2, 3)}
                for k in (1, 2, 3):
                    scale = 1.0 if layer_lr is None else layer_lr[k - 1]
                    for kind, grad in grads[k].items():
                        net.layers[k - 1].params[kind] += scale_update(
                            optimizer, f"{kind}{k}", grad, t, scale)
                continue
            for k in layers:
                grads = layer_gradient(net, xb, yb, k, check)
                scale = 1.0 if layer_lr is None else layer_lr[k - 1]
                for kind, grad in grads.items():
                    net.layers[k - 1].params[kind] += scale_update(
                        optimizer, f"{kind}{k}", grad, t, scale)
        costs.append(total / N)
    return net.get_weights(), costs


def scale_update(optimizer, name: str, grad: np.ndarray, t: int, scale: float) -> np.ndarray:
    lr = optimizer.lr
    optimizer.lr = lr * scale
    try:
        return optimizer.update(name, grad, t)
    finally:
        optimizer.lr = lr


def engine_run(order: str, optimizer_name: str, lr: float, layer_lr=None,
               weight_decay: float = 0.0):
    x, y = data()
    net = network()
    optimizer = make_optimizer(optimizer_name, net, lr=lr, weight_decay=weight_decay)
    records = list(train_epochs(net, optimizer, x, y, epochs=EPOCHS, batch_size=BATCH,
                                rng=np.random.default_rng(3), diagnostics=False,
                                update_order=order, layer_lr=layer_lr))
    return net.get_weights(), [r.metrics["train_cost"] for r in records]


PLAIN = {"sgd": lambda lr: PlainSGD(lr), "adam": lambda lr: PlainAdam(lr)}


@pytest.mark.parametrize("optimizer_name,lr", [("sgd", 0.5), ("adam", 0.05)])
@pytest.mark.parametrize("order", ["simultaneous", "output_first", "input_first"])
def test_each_order_follows_the_plain_loop(order, optimizer_name, lr):
    expected, expected_costs = plain_loop(order, PLAIN[optimizer_name](lr))
    weights, costs = engine_run(order, optimizer_name, lr)
    for name, array in expected.items():
        np.testing.assert_allclose(weights[name], array, rtol=0, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(costs, expected_costs, rtol=0, atol=1e-12)


def test_the_orders_differ():
    finals = [engine_run(order, "sgd", 0.5)[0]["W1"]
              for order in ("simultaneous", "output_first", "input_first")]
    assert not np.allclose(finals[0], finals[1]) and not np.allclose(finals[1], finals[2])


@pytest.mark.parametrize("order", ["simultaneous", "output_first"])
def test_layer_lr_scales_each_layer_as_the_plain_loop(order):
    layer_lr = [2.0, 0.5, 1.5]
    expected, _ = plain_loop(order, PlainAdam(0.05), layer_lr=layer_lr)
    weights, _ = engine_run(order, "adam", 0.05, layer_lr=layer_lr)
    for name, array in expected.items():
        np.testing.assert_allclose(weights[name], array, rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
def test_per_layer_steps_equal_the_whole_step_for_every_optimizer(optimizer_name):
    """Layer by layer from the same grads (layer_lr all 1) is the flat step, bit for bit:
    each layer's optimizer state is its own part of the flat state, weight decay included."""
    plain, _ = engine_run("simultaneous", optimizer_name, 0.05, weight_decay=0.01)
    ones, _ = engine_run("simultaneous", optimizer_name, 0.05, layer_lr=[1, 1, 1],
                         weight_decay=0.01)
    for name, array in plain.items():
        np.testing.assert_array_equal(ones[name], array)


@pytest.mark.parametrize("kwargs,field", [
    ({"update_order": "backward"}, "update_order"),
    ({"layer_lr": [1.0, 1.0]}, "layer_lr"),
    ({"layer_lr": [1.0, 0.0, 1.0]}, "layer_lr"),
])
def test_bad_order_options_are_refused_before_training(kwargs, field):
    x, y = data()
    net = network()
    before = net.get_weights()
    with pytest.raises(SpecError) as error:
        train_epochs(net, make_optimizer("sgd", net, lr=0.1), x, y, epochs=1,
                     batch_size=None, rng=np.random.default_rng(0), **kwargs)
    assert error.value.field == field
    np.testing.assert_array_equal(net.get_weights()["W1"], before["W1"])


def test_truncated_backward_gives_each_layer_the_full_gradient():
    x, y = data()
    net = network("relu")
    net.forward_backward(x, y)
    full = {name: grad.copy() for name, _, grad in net.parameters()}
    for layer in (1, 2, 3):
        net.zero_grad()
        net.forward_backward(x, y, lowest_layer=layer)
        for k in range(1, 4):
            grad = net.layers[k - 1].grads["W"]
            if k >= layer:
                np.testing.assert_array_equal(grad, full[f"W{k}"])
            else:
                assert not grad.any()  # below the stop: untouched
    reports = check_network(network("tanh"), x, y, per_layer=True)  # relu has kinks here
    assert max(report.rel_error for report in reports.values()) < 1e-5


def first_order_predictions(order: str, lr: float) -> dict[int, float]:
    """lr ||g_k||^2 (g_k over W_k and b_k) for one full-batch SGD step, g_k taken as ``order``
    takes it, by the plain loop."""
    x, y = data()
    net = network()
    layers = {"output_first": [3, 2, 1], "input_first": [1, 2, 3]}.get(order)
    if layers is None:  # simultaneous: every gradient at the starting weights
        grads = {k: layer_gradient(net, x, y, k, check=False) for k in (1, 2, 3)}
        return {k: lr * sum(float(np.vdot(g, g)) for g in grads[k].values()) for k in grads}
    predictions = {}
    for k in layers:
        grads = layer_gradient(net, x, y, k, check=False)
        predictions[k] = lr * sum(float(np.vdot(g, g)) for g in grads.values())
        for kind, grad in grads.items():
            net.layers[k - 1].params[kind] -= lr * grad
    return predictions


@pytest.mark.parametrize("order", ["simultaneous", "output_first", "input_first"])
def test_effect_at_a_small_lr_is_the_first_order_prediction(order):
    lr = 1e-4
    x, y = data()
    net = network()
    record, = train_epochs(net, make_optimizer("sgd", net, lr=lr), x, y, epochs=1,
                           batch_size=None, rng=np.random.default_rng(0),
                           diagnostics=["effect", "sensitivity"], update_order=order)
    predictions = first_order_predictions(order, lr)
    for k, predicted in predictions.items():
        effect = record.metrics[f"effect/layer{k}"]
        assert effect == pytest.approx(predicted, rel=1e-3)
        assert record.metrics[f"effect_first_order/layer{k}"] == pytest.approx(predicted,
                                                                               rel=1e-9)
        assert record.metrics[f"sensitivity/layer{k}"] > 0
    assert not any(key.startswith(("grad_norm", "weight_norm")) for key in record.metrics)


@pytest.mark.parametrize("order", ["simultaneous", "output_first"])
def test_sensitivity_is_grad_norm_times_weight_norm(order):
    x, y = data()
    net = network()
    record, = train_epochs(net, make_optimizer("sgd", net, lr=0.1), x, y, epochs=1,
                           batch_size=None, rng=np.random.default_rng(0),
                           diagnostics=["sensitivity", "grad_norm", "weight_norm",
                                        "update_ratio", "delta_norm"], update_order=order)
    metrics = record.metrics
    for k in (1, 2, 3):
        assert metrics[f"sensitivity/layer{k}"] == pytest.approx(
            metrics[f"grad_norm/layer{k}"] * metrics[f"weight_norm/layer{k}"], rel=1e-12)
        assert {f"update_ratio/layer{k}", f"delta_norm/layer{k}"} <= set(metrics)


def test_simultaneous_effect_leaves_the_step_unchanged():
    x, y = data()
    runs = []
    for kinds in ([], ["effect"]):
        net = network()
        list(train_epochs(net, make_optimizer("adam", net, lr=0.05), x, y, epochs=2,
                          batch_size=BATCH, rng=np.random.default_rng(3), diagnostics=kinds))
        runs.append(net.get_weights())
    for name, array in runs[0].items():
        np.testing.assert_array_equal(runs[1][name], array)


@pytest.mark.parametrize("order", ["output_first", "input_first"])
def test_sequential_effects_add_up_to_the_batch_cost_drop(order):
    """Each effect is the cost before a layer's update minus the cost after it, so over the
    layers they add up to the batch's whole drop."""
    x, y = data()
    net = network()
    before = net.loss(x, y)
    record, = train_epochs(net, make_optimizer("adam", net, lr=0.05), x, y, epochs=1,
                           batch_size=None, rng=np.random.default_rng(0),
                           diagnostics=["effect"], update_order=order)
    total = sum(record.metrics[f"effect/layer{k}"] for k in (1, 2, 3))
    assert total == pytest.approx(before - net.loss(x, y), abs=1e-15)
    assert record.metrics["train_cost"] == before


@pytest.mark.parametrize("order", ["output_first", "input_first"])
def test_float32_sequential_training_stays_float32(order):
    x, y = data()
    net = build_network(SIZES, activation="tanh", output="softmax", cost="cross_entropy",
                        init="glorot_uniform", rng=np.random.default_rng(7), dtype=np.float32)
    list(train_epochs(net, make_optimizer("momentum", net, lr=0.1, weight_decay=0.01), x, y,
                      epochs=2, batch_size=BATCH, rng=np.random.default_rng(3),
                      update_order=order, layer_lr=[1.0, 0.5, 2.0]))
    assert all(param.dtype == np.float32 for _, param, _ in net.parameters())
    assert all(np.all(np.isfinite(param)) for _, param, _ in net.parameters())
