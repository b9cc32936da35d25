"""Network building, gradients end to end, weights in and out, dtypes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from nnchain.errors import SpecError
from nnchain.nn import ACTIVATIONS, build_network, check_network, make_optimizer
from nnchain.nn.gradcheck import assert_gradients


def small_network(rng, **overrides):
    options = {"activation": "tanh", "output": "softmax", "cost": "cross_entropy",
               "init": "glorot_uniform", "rng": rng}
    options.update(overrides)
    return build_network([3, 5, 4, 2], **options)


def one_hot(rng, n, k):
    return np.eye(k)[rng.integers(0, k, n)]


def test_build_shapes_names_and_sizes(rng):
    network = small_network(rng)
    assert network.sizes == [3, 5, 4, 2]
    names = [name for name, _, _ in network.parameters()]
    assert names == ["W1", "b1", "W2", "b2", "W3", "b3"]
    shapes = {name: param.shape for name, param, _ in network.parameters()}
    assert shapes == {"W1": (3, 5), "b1": (5,), "W2": (5, 4), "b2": (4,), "W3": (4, 2),
                      "b3": (2,)}
    assert network.forward(rng.standard_normal((7, 3))).shape == (7, 2)


def test_parameters_are_the_layers_arrays(rng):
    network = small_network(rng)
    params = dict((name, (p, g)) for name, p, g in network.parameters())
    assert params["W2"][0] is not None
    assert np.shares_memory(params["W2"][0], network.layers[1].params["W"])
    assert np.shares_memory(params["b3"][1], network.layers[2].grads["b"])


@pytest.mark.parametrize("hidden", sorted(ACTIVATIONS))
@pytest.mark.parametrize("output, cost", [("softmax", "cross_entropy"), ("sigmoid", "bce"),
                                          ("identity", "mse"), ("tanh", "mse")])
def test_network_gradient_check(hidden, output, cost, rng):
    network = small_network(rng, activation=hidden, output=output, cost=cost)
    for _, param, _ in network.parameters():  # biases off zero, so every path is exercised
        param += rng.uniform(-0.1, 0.1, param.shape)
    x = rng.standard_normal((6, 3))
    y = one_hot(rng, 6, 2)
    reports = check_network(network, x, y)
    assert set(reports) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert_gradients(reports, tol=1e-5)


def test_forward_backward_accumulates_on_request(rng):
    network = small_network(rng)
    x, y = rng.standard_normal((5, 3)), one_hot(rng, 5, 2)
    network.forward_backward(x, y)
    once = network.params.grads.copy()
    network.forward_backward(x, y)
    np.testing.assert_array_equal(network.params.grads, once)  # overwritten, not added
    network.forward_backward(x, y, accumulate=True)
    np.testing.assert_allclose(network.params.grads, 2 * once, rtol=1e-14)
    network.zero_grad()
    assert not network.params.grads.any()


def test_forward_then_backward_matches_forward_backward(rng):
    """The general chain (network.backward through the output activation) equals the fused
    head's gradient."""
    network = small_network(rng)
    x, y = rng.standard_normal((5, 3)), one_hot(rng, 5, 2)
    network.forward_backward(x, y)
    fused = network.params.grads.copy()
    network.zero_grad()
    p = network.forward(x)
    network.backward(network.cost.grad(p, y))
    np.testing.assert_allclose(network.params.grads, fused, rtol=1e-10, atol=1e-15)


def test_predict_and_loss_cache_nothing_and_agree(rng):
    network = small_network(rng)
    x, y = rng.standard_normal((5, 3)), one_hot(rng, 5, 2)
    cost = network.forward_backward(x, y)
    np.testing.assert_allclose(network.predict(x), network.head.output, rtol=1e-14)
    assert network.loss(x, y) == pytest.approx(cost, rel=1e-14)
    np.testing.assert_allclose(network.forward(x), network.predict(x), rtol=1e-14)


def test_hand_worked_one_step_example():
    """A 2-2-1 network (relu hidden, identity output, mse) and one SGD step, by hand.

    x = [1, 2], y = [1]
    W1 = [[0.1, 0.2], [0.3, -0.4]], b1 = [0, 0.1], W2 = [[0.5], [0.6]], b2 = [0.2]
    forward:  z1 = x W1 + b1 = [1*0.1 + 2*0.3, 1*0.2 + 2*(-0.4)] + [0, 0.1] = [0.7, -0.5]
              a1 = relu(z1) = [0.7, 0]
              z2 = 0.7*0.5 + 0*0.6 + 0.2 = 0.55 = output
              cost = 1/2 (0.55 - 1)^2 = 0.10125 (batch of one)
    backward: dz2 = 0.55 - 1 = -0.45
              dW2 = a1^T dz2 = [[0.7 * -0.45], [0 * -0.45]] = [[-0.315], [0]];  db2 = [-0.45]
              da1 = dz2 W2^T = [-0.45*0.5, -0.45*0.6] = [-0.225, -0.27]
              dz1 = da1 * (z1 > 0) = [-0.225, 0]
              dW1 = x^T dz1 = [[1 * -0.225, 0], [2 * -0.225, 0]] = [[-0.225, 0], [-0.45, 0]]
              db1 = [-0.225, 0]
    SGD, lr 0.1: W1 = [[0.1 + 0.0225, 0.2], [0.3 + 0.045, -0.4]] = [[0.1225, 0.2], [0.345, -0.4]]
                 b1 = [0.0225, 0.1];  W2 = [[0.5315], [0.6]];  b2 = [0.2 + 0.045] = [0.245]
    """
    network = build_network([2, 2, 1], activation="relu", output="identity", cost="mse",
                            init="he_normal", rng=np.random.default_rng(0))
    network.set_weights({"W1": np.array([[0.1, 0.2], [0.3, -0.4]]), "b1": np.array([0.0, 0.1]),
                         "W2": np.array([[0.5], [0.6]]), "b2": np.array([0.2])})
    x, y = np.array([[1.0, 2.0]]), np.array([[1.0]])
    optimizer = make_optimizer("sgd", network, lr=0.1)
    assert network.forward_backward(x, y) == pytest.approx(0.10125)
    grads = {name: grad for name, _, grad in network.parameters()}
    np.testing.assert_allclose(grads["W1"], [[-0.225, 0], [-0.45, 0]])
    np.testing.assert_allclose(grads["W2"], [[-0.315], [0]])
    optimizer.step()
    weights = network.get_weights()
    np.testing.assert_allclose(weights["W1"], [[0.1225, 0.2], [0.345, -0.4]], rtol=1e-14)
    np.testing.assert_allclose(weights["b1"], [0.0225, 0.1], rtol=1e-14)
    np.testing.assert_allclose(weights["W2"], [[0.5315], [0.6]], rtol=1e-14)
    np.testing.assert_allclose(weights["b2"], [0.245], rtol=1e-14)


def test_get_set_weights_round_trip(rng):
    source, target = small_network(rng), small_network(np.random.default_rng(99))
    weights = source.get_weights()
    assert list(weights) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    target.set_weights(weights)
    x = rng.standard_normal((4, 3))
    np.testing.assert_array_equal(target.predict(x), source.predict(x))
    weights["W1"][0, 0] += 1.0  # copies: changing them changes neither network
    assert source.get_weights()["W1"][0, 0] != weights["W1"][0, 0]


@pytest.mark.parametrize("change, message", [
    (lambda w: w.update(W2=np.zeros((4, 5))), "weights: W2 must have shape (5, 4), but got (4, 5)"),
    (lambda w: w.update(b1=np.zeros(6)), "weights: b1 must have shape (5,), but got (6,)"),
    (lambda w: w.pop("b3"), "weights: missing key 'b3' of shape (2,)"),
    (lambda w: w.update(W9=np.zeros(1)), "weights: unexpected key 'W9'"),
    (lambda w: w["W1"].__setitem__((0, 0), np.nan), "weights: W1 must be finite"),
])
def test_set_weights_refuses_bad_input_and_changes_nothing(change, message, rng):
    network = small_network(rng)
    before = network.get_weights()
    weights = network.get_weights()
    change(weights)
    with pytest.raises(SpecError) as error:
        network.set_weights(weights)
    assert error.value.field == "weights"
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
    for name, array in network.get_weights().items():
        np.testing.assert_array_equal(array, before[name])


def test_float32_network_stays_float32(rng):
    network = small_network(rng, dtype=np.float32)
    assert network.dtype == np.float32
    assert all(p.dtype == g.dtype == np.float32 for _, p, g in network.parameters())
    x = rng.standard_normal((5, 3))  # float64 input is converted, not upcasting the network
    assert network.forward(x).dtype == np.float32
    assert network.predict(x).dtype == np.float32
    y = one_hot(rng, 5, 2).astype(np.float32)
    cost = network.forward_backward(x.astype(np.float32), y, diagnostics=True)
    assert isinstance(cost, float)
    assert network.head.output.dtype == np.float32
    assert all(isinstance(v, float) for v in network.diagnostics.values())
    assert all(layer.input.dtype == np.float32 for layer in network.layers)
    with pytest.raises(SpecError, match="dtype"):
        network.forward_backward(x, y)  # float64 x into the hot path is refused


@pytest.mark.parametrize("field, overrides", [
    ("activation", {"activation": "swish"}), ("output", {"output": "gelu"}),
    ("cost", {"cost": "hinge"}), ("init", {"init": "ones"}), ("dtype", {"dtype": np.int32}),
])
def test_build_network_refuses_unknown_names(field, overrides, rng):
    with pytest.raises(SpecError) as error:
        small_network(rng, **overrides)
    assert error.value.field == field


@pytest.mark.parametrize("sizes", [[3], [3, 0, 2], [3, 2.5, 2], "3-2"])
def test_build_network_refuses_bad_sizes(sizes, rng):
    with pytest.raises(SpecError, match="sizes"):
        build_network(sizes, activation="relu", output="softmax", cost="cross_entropy",
                      init="he", rng=rng)


def test_network_backward_leaves_the_upstream_gradient_alone(rng):
    network = small_network(rng)
    x = rng.standard_normal((5, 3))
    network.forward(x)
    upstream = rng.standard_normal((5, 2))
    before = upstream.copy()
    dx = network.backward(upstream)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(upstream, before)


def test_forward_backward_follows_weights_changed_after_its_buffers_were_made(rng):
    """The step's plan binds the parameter arrays once per batch size: set_weights, an
    optimizer step and a pickled copy must all be seen by the next forward_backward."""
    network = small_network(rng, activation="relu")
    x, y = rng.standard_normal((6, 3)), one_hot(rng, 6, 2)
    network.forward_backward(x, y)  # makes the plan for n = 6
    other = small_network(np.random.default_rng(7), activation="relu")
    network.set_weights(other.get_weights())
    assert network.forward_backward(x, y) == pytest.approx(other.forward_backward(x, y),
                                                           rel=1e-14)
    np.testing.assert_array_equal(network.params.grads, other.params.grads)
    make_optimizer("sgd", network, lr=0.1).step()
    make_optimizer("sgd", other, lr=0.1).step()
    copy = pickle.loads(pickle.dumps(network))
    for net in (network, other, copy):
        net.forward_backward(x, y)
    np.testing.assert_array_equal(network.params.grads, other.params.grads)
    np.testing.assert_array_equal(copy.params.grads, other.params.grads)


def test_forward_backward_keeps_the_layer_caches(rng):
    """After forward_backward, each layer holds its input and each hidden activation its
    output, as Dense.forward and Activation.forward leave them."""
    network = small_network(rng, activation="relu")
    x, y = rng.standard_normal((6, 3)), one_hot(rng, 6, 2)
    network.forward_backward(x, y)
    expected = x
    for layer, activation in zip(network.layers[:-1], network.activations[:-1], strict=True):
        assert np.array_equal(layer.input, expected)
        expected = np.maximum(expected @ layer.params["W"] + layer.params["b"], 0)
        np.testing.assert_allclose(activation.output, expected, rtol=1e-14)
    np.testing.assert_allclose(network.layers[-1].input, expected, rtol=1e-14)
