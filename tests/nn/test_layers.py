"""Contract suite for layers (Dense is the one layer), and the initialisers."""

from __future__ import annotations

import numpy as np
import pytest

from nnchain.errors import NnchainError, SpecError
from nnchain.nn import INITIALIZERS, Dense
from nnchain.nn.gradcheck import assert_gradients, check_layer

LAYERS = {"dense": lambda rng, dtype=np.float64: Dense(4, 3, init="glorot_uniform", rng=rng,
                                                      dtype=dtype)}


@pytest.fixture(params=sorted(LAYERS))
def make_layer(request):
    return LAYERS[request.param]


def test_shapes(make_layer, rng):
    layer = make_layer(rng)
    assert set(layer.params) == set(layer.grads) == {"W", "b"}
    assert layer.params["W"].shape == (4, 3) and layer.params["b"].shape == (3,)
    for key in layer.params:
        assert layer.grads[key].shape == layer.params[key].shape
    z = layer.forward(rng.standard_normal((5, 4)))
    assert z.shape == (5, 3)
    assert layer.backward(np.ones((5, 3))).shape == (5, 4)


def test_gradient_check(make_layer, rng):
    layer = make_layer(rng)
    layer.params["b"][:] = rng.standard_normal(3)
    assert_gradients(check_layer(layer, rng.standard_normal((6, 4)), rng=rng), tol=1e-7)


def test_gradients_accumulate_over_two_backward_calls(make_layer, rng):
    layer = make_layer(rng)
    x, upstream = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    layer.forward(x)
    layer.backward(upstream)
    once = {key: grad.copy() for key, grad in layer.grads.items()}
    layer.backward(upstream)
    for key, grad in layer.grads.items():
        np.testing.assert_allclose(grad, 2 * once[key], rtol=1e-14)
    layer.zero_grad()
    assert all(not grad.any() for grad in layer.grads.values())


def test_upstream_gradient_not_modified(make_layer, rng):
    layer = make_layer(rng)
    layer.forward(rng.standard_normal((5, 4)))
    upstream = rng.standard_normal((5, 3))
    before = upstream.copy()
    layer.backward(upstream)
    np.testing.assert_array_equal(upstream, before)


def test_backward_before_forward_raises(make_layer, rng):
    with pytest.raises(NnchainError, match="before forward"):
        make_layer(rng).backward(np.ones((2, 3)))


def test_float32_stays_float32(make_layer, rng):
    layer = make_layer(rng, np.float32)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    assert layer.forward(x).dtype == np.float32
    assert layer.backward(np.ones((5, 3), np.float32)).dtype == np.float32
    assert all(g.dtype == np.float32 for g in layer.grads.values())


def test_dense_computes_x_w_plus_b(rng):
    layer = Dense(2, 2, init="small_normal", rng=rng)
    layer.params["W"][:] = [[1.0, 2.0], [3.0, 4.0]]
    layer.params["b"][:] = [0.5, -0.5]
    np.testing.assert_allclose(layer.forward(np.array([[1.0, 1.0]])), [[4.5, 5.5]])


# ---------------------------------------------------------------- initialisers
@pytest.mark.parametrize("name", sorted(INITIALIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initializer_shape_dtype_and_seed(name, dtype):
    w = INITIALIZERS[name](30, 20, np.random.default_rng(0), np.dtype(dtype))
    assert w.shape == (30, 20) and w.dtype == dtype
    again = INITIALIZERS[name](30, 20, np.random.default_rng(0), np.dtype(dtype))
    np.testing.assert_array_equal(w, again)


@pytest.mark.parametrize("name, variance", [
    ("glorot_uniform", 2 / (400 + 300)), ("glorot_normal", 2 / (400 + 300)),
    ("he_normal", 2 / 400), ("he_uniform", 2 / 400), ("small_normal", 1e-4),
])
def test_initializer_variance(name, variance):
    w = INITIALIZERS[name](400, 300, np.random.default_rng(0), np.dtype(np.float64))
    assert abs(w.mean()) < 0.05 * np.sqrt(variance)
    assert w.var() == pytest.approx(variance, rel=0.03)


def test_initializer_aliases():
    assert INITIALIZERS["he"] is INITIALIZERS["he_normal"]
    assert INITIALIZERS["xavier_uniform"] is INITIALIZERS["glorot_uniform"]
    assert INITIALIZERS["xavier_normal"] is INITIALIZERS["glorot_normal"]


def test_biases_start_at_zero(rng):
    assert not Dense(3, 5, init="he_normal", rng=rng).params["b"].any()


def test_unknown_init_is_a_spec_error(rng):
    with pytest.raises(SpecError, match="init: must be one of"):
        Dense(3, 5, init="orthogonal", rng=rng)
