"""Contract suite: every activation in ACTIVATIONS goes through the same checks."""

from __future__ import annotations

import numpy as np
import pytest

from nnchain.errors import NnchainError
from nnchain.nn import ACTIVATIONS
from nnchain.nn.gradcheck import assert_gradients, check_activation

NAMES = sorted(ACTIVATIONS)


def away_from_kinks(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Pre-activations at least 0.1 away from 0, where relu's slope jumps."""
    z = rng.uniform(0.1, 2.0, size=shape)
    return z * rng.choice([-1.0, 1.0], size=shape)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_registry_name(name, rng):
    activation = ACTIVATIONS[name]()
    assert activation.name == name
    z = away_from_kinks(rng, (5, 3))
    a = activation.forward(z)
    assert a.shape == z.shape
    assert activation.backward(np.ones_like(z)).shape == z.shape


@pytest.mark.parametrize("name", NAMES)
def test_gradient_check(name, rng):
    reports = check_activation(ACTIVATIONS[name](), away_from_kinks(rng, (6, 4)), rng=rng)
    assert_gradients(reports, tol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_upstream_gradient_and_input_not_modified(name, rng):
    activation = ACTIVATIONS[name]()
    z = away_from_kinks(rng, (5, 3))
    z_before = z.copy()
    activation.forward(z)
    upstream = rng.standard_normal(z.shape)
    upstream_before = upstream.copy()
    dz = activation.backward(upstream)
    np.testing.assert_array_equal(upstream, upstream_before)
    np.testing.assert_array_equal(z, z_before)
    assert dz is not upstream


@pytest.mark.parametrize("name", NAMES)
def test_backward_before_forward_raises(name):
    with pytest.raises(NnchainError, match="before forward"):
        ACTIVATIONS[name]().backward(np.ones((2, 3)))


@pytest.mark.parametrize("name", NAMES)
def test_out_argument_gives_the_same_numbers_in_place(name, rng):
    z = away_from_kinks(rng, (5, 3))
    upstream = rng.standard_normal(z.shape)
    fresh = ACTIVATIONS[name]()
    expected_a = fresh.forward(z).copy()
    expected_dz = fresh.backward(upstream)
    in_place = ACTIVATIONS[name]()
    buffer = z.copy()
    assert in_place.forward(buffer, buffer) is buffer
    np.testing.assert_allclose(buffer, expected_a, rtol=1e-15)
    delta = upstream.copy()
    assert in_place.backward(delta, delta) is delta
    np.testing.assert_allclose(delta, expected_dz, rtol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_float32_stays_float32(name, rng):
    activation = ACTIVATIONS[name]()
    z = away_from_kinks(rng, (5, 3)).astype(np.float32)
    assert activation.forward(z).dtype == np.float32
    assert activation.backward(np.ones_like(z)).dtype == np.float32


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softmax"])
def test_extreme_inputs_stay_finite(name):
    z = np.array([[-1000.0, 0.0, 1000.0], [800.0, 799.0, -5.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        a = ACTIVATIONS[name]().forward(z)
    assert np.all(np.isfinite(a))


def test_known_values():
    z = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_allclose(ACTIVATIONS["relu"]().forward(z), [[0, 0, 3]])
    np.testing.assert_allclose(ACTIVATIONS["leaky_relu"]().forward(z), [[-0.02, 0, 3]])
    np.testing.assert_allclose(ACTIVATIONS["sigmoid"]().forward(z), 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(ACTIVATIONS["softmax"]().forward(z),
                               np.exp(z) / np.exp(z).sum(), rtol=1e-12)
    assert ACTIVATIONS["identity"]().forward(z) is z
