"""Contract suite for optimizers: every one through the same checks, then each rule."""

from __future__ import annotations

import numpy as np
import pytest

from nnchain.errors import SpecError
from nnchain.nn import OPTIMIZERS, build_network, make_optimizer, optim

NAMES = sorted(OPTIMIZERS)


def network_with_grads(rng, dtype=np.float64):
    network = build_network([3, 4, 2], activation="tanh", output="softmax",
                            cost="cross_entropy", init="glorot_uniform", rng=rng, dtype=dtype)
    x = rng.standard_normal((8, 3)).astype(dtype)
    y = np.eye(2, dtype=dtype)[rng.integers(0, 2, 8)]
    network.forward_backward(x, y)
    return network, x, y


@pytest.mark.parametrize("name", NAMES)
def test_step_reads_grads_and_never_changes_them(name, rng):
    network, _, _ = network_with_grads(rng)
    optimizer = make_optimizer(name, network, lr=0.01)
    grads, before = network.params.grads.copy(), network.get_weights()
    optimizer.step()
    np.testing.assert_array_equal(network.params.grads, grads)
    after = network.get_weights()
    assert all(not np.array_equal(after[k], before[k]) for k in before)
    assert optimizer.t == 1


@pytest.mark.parametrize("name", NAMES)
def test_first_step_descends(name, rng):
    network, x, y = network_with_grads(rng)
    before = network.loss(x, y)
    make_optimizer(name, network, lr=1e-3).step()
    assert network.loss(x, y) < before


@pytest.mark.parametrize("name", NAMES)
def test_step_lr_argument_overrides(name, rng):
    first, _, _ = network_with_grads(np.random.default_rng(1))
    second, _, _ = network_with_grads(np.random.default_rng(1))
    make_optimizer(name, first, lr=0.5).step(0.01)
    make_optimizer(name, second, lr=0.01).step()
    np.testing.assert_array_equal(first.params.values, second.params.values)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_continues_identically(name, rng):
    network, x, y = network_with_grads(rng)
    optimizer = make_optimizer(name, network, lr=0.01)
    for _ in range(3):
        network.forward_backward(x, y)
        optimizer.step()
    state, weights = optimizer.state_dict(), network.get_weights()
    assert state["t"].shape == () and int(state["t"]) == 3
    assert all(isinstance(v, np.ndarray) and v.dtype.kind in "fi" for v in state.values())

    clone, _, _ = network_with_grads(np.random.default_rng(7))
    clone.set_weights(weights)
    restored = make_optimizer(name, clone, lr=0.01)
    restored.load_state_dict(state)
    for _ in range(3):
        network.forward_backward(x, y)
        optimizer.step()
        clone.forward_backward(x, y)
        restored.step()
    np.testing.assert_array_equal(clone.params.values, network.params.values)


@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_refuses_mismatches(name, rng):
    network, _, _ = network_with_grads(rng)
    optimizer = make_optimizer(name, network, lr=0.01)
    state = optimizer.state_dict()
    with pytest.raises(SpecError, match="optimizer_state"):
        optimizer.load_state_dict({**state, "bogus.W1": np.zeros(1)})
    key = next((k for k in state if k != "t"), None)
    if key is not None:
        with pytest.raises(SpecError, match=f"{key} must have shape"):
            optimizer.load_state_dict({**state, key: np.zeros((9, 9))})


@pytest.mark.parametrize("name", NAMES)
def test_weight_decay_shrinks_weights_only(name, rng):
    network, _, _ = network_with_grads(rng)
    network.zero_grad()
    for _, param, _ in network.parameters():
        param[...] = 1.0
    make_optimizer(name, network, lr=0.1, weight_decay=0.5).step()
    weights = network.get_weights()
    for key, array in weights.items():
        if key.startswith("W"):
            assert np.all(array < 1.0), key
        else:
            np.testing.assert_array_equal(array, 1.0)


@pytest.mark.parametrize("name", NAMES)
def test_float32_stays_float32(name, rng):
    network, x, y = network_with_grads(rng, np.float32)
    optimizer = make_optimizer(name, network, lr=0.01, weight_decay=1e-3)
    norms = optimizer.step(update_norms=True)
    assert network.params.values.dtype == np.float32
    assert all(v.dtype == np.float32 for k, v in optimizer.state_dict().items() if k != "t")
    assert set(norms) == {"W1", "W2"} and all(isinstance(v, float) for v in norms.values())


@pytest.mark.parametrize("name", NAMES)
def test_update_norms_are_the_step_sizes(name, rng):
    network, _, _ = network_with_grads(rng)
    before = network.get_weights()
    norms = make_optimizer(name, network, lr=0.01).step(update_norms=True)
    after = network.get_weights()
    for key, norm in norms.items():
        assert norm == pytest.approx(np.linalg.norm(after[key] - before[key]), rel=1e-9)


def test_rules_by_hand():
    """One parameter, gradient 2 at every step, lr 0.1."""
    def run(name, steps, **hyper):
        network = build_network([1, 1], activation="identity", output="identity", cost="mse",
                                init="small_normal", rng=np.random.default_rng(0))
        network.set_weights({"W1": np.array([[1.0]]), "b1": np.array([0.0])})
        optimizer = make_optimizer(name, network, lr=0.1, **hyper)
        for _ in range(steps):
            network.params.grads[...] = 2.0
            optimizer.step()
        return network.get_weights()["W1"].item()

    assert run("sgd", 2) == pytest.approx(1 - 0.2 - 0.2)
    # momentum: v1 = -0.2, v2 = 0.9 * -0.2 - 0.2 = -0.38; W = 1 - 0.2 - 0.38
    assert run("momentum", 2) == pytest.approx(0.42)
    # nesterov: v1 = -0.2, step1 = 0.9 v1 - 0.2 = -0.38; v2 = -0.38, step2 = 0.9 v2 - 0.2
    assert run("nesterov", 2) == pytest.approx(1 - 0.38 - 0.542)
    # rmsprop: s1 = 0.1 * 4 = 0.4, step = -0.1 * 2 / sqrt(0.4)
    assert run("rmsprop", 1) == pytest.approx(1 - 0.2 / np.sqrt(0.4), rel=1e-7)
    # adam: bias-corrected m_hat = 2, v_hat = 4, so each step is -lr * 2 / 2 = -0.1
    assert run("adam", 3) == pytest.approx(0.7, rel=1e-7)
    assert run("momentum", 2, momentum=0.5) == pytest.approx(1 - 0.2 - 0.3)


@pytest.mark.parametrize("kwargs, field", [
    ({"name": "lbfgs", "lr": 0.1}, "optimizer"),
    ({"name": "sgd", "lr": 0.0}, "lr"),
    ({"name": "sgd", "lr": float("nan")}, "lr"),
    ({"name": "sgd", "lr": 0.1, "weight_decay": -1.0}, "weight_decay"),
    ({"name": "sgd", "lr": 0.1, "momentum": 0.9}, "optimizer"),
    ({"name": "adam", "lr": 0.1, "beta1": -0.5}, "optimizer"),
])
def test_make_optimizer_validates(kwargs, field, rng):
    network, _, _ = network_with_grads(rng)
    name = kwargs.pop("name")
    with pytest.raises(SpecError) as error:
        make_optimizer(name, network, **kwargs)
    assert error.value.field == field


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_a_blocked_update_equals_the_whole_array_update(name, weight_decay, monkeypatch):
    """Large parameter sets are updated a block at a time (``BLOCK_BYTES``); blocks of 40
    bytes here, so a block boundary falls inside every parameter."""
    whole, x, y = network_with_grads(np.random.default_rng(3))
    blocked, _, _ = network_with_grads(np.random.default_rng(3))
    plain = make_optimizer(name, whole, lr=0.05, weight_decay=weight_decay)
    monkeypatch.setattr(optim, "BLOCK_BYTES", 40)
    chunked = make_optimizer(name, blocked, lr=0.05, weight_decay=weight_decay)
    assert plain._blocks is None and len(chunked._blocks) > len(whole.params.names)
    for _ in range(3):
        whole.forward_backward(x, y)
        blocked.forward_backward(x, y)
        plain.step()
        chunked.step()
    np.testing.assert_array_equal(blocked.params.values, whole.params.values)
    for state, flat in plain.state.items():
        np.testing.assert_array_equal(chunked.state[state], flat)
    assert chunked.step(update_norms=True) == plain.step(update_norms=True)
