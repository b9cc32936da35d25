"""The gradient checker itself: it passes correct gradients and names broken ones."""

from __future__ import annotations

import numpy as np
import pytest

from nnchain.errors import GradientCheckError
from nnchain.nn import Dense, activations, build_network, check_network
from nnchain.nn.gradcheck import (
    DEFAULT_TOLERANCE,
    TINY,
    GradReport,
    assert_gradients,
    check_layer,
    noise_floor,
    numeric_gradient,
    relative_error,
)


def test_numeric_gradient_of_a_quadratic_and_restores_the_array():
    array = np.array([[1.0, -2.0], [0.5, 3.0]])
    before = array.copy()
    grad = numeric_gradient(lambda: float((array ** 2).sum()), array)
    np.testing.assert_allclose(grad, 2 * before, rtol=1e-8)
    np.testing.assert_array_equal(array, before)


def test_relative_error_formula():
    assert relative_error(np.array([1.0]), np.array([3.0]))[0] == pytest.approx(2 / 3)
    assert relative_error(np.array([0.0]), np.array([0.0]))[0] == 0.0
    # under the floor, the difference is measured against the floor
    assert relative_error(np.array([1e-8]), np.array([2e-8]), floor=1e-4)[0] == \
        pytest.approx(1e-4)


def test_noise_floor_scales_with_the_cost_the_step_and_the_tolerance():
    floor = noise_floor(0.7)
    assert floor == pytest.approx(10 * np.finfo(float).eps * 0.7 / (1e-6 * DEFAULT_TOLERANCE))
    assert noise_floor(7.0) == pytest.approx(10 * floor)
    assert noise_floor(0.7, eps=1e-5) == pytest.approx(floor / 10)
    assert noise_floor(0.7, tolerance=1e-4) == pytest.approx(floor / 10)
    assert noise_floor(0.0) == TINY
    with pytest.raises(ValueError):
        noise_floor(0.7, tolerance=0)


def test_check_network_reports_every_parameter(rng):
    network = build_network([2, 3, 2], activation="tanh", output="softmax",
                            cost="cross_entropy", init="glorot_uniform", rng=rng)
    reports = check_network(network, rng.standard_normal((4, 2)), np.eye(2)[[0, 1, 1, 0]],
                            tolerance=1e-6)
    assert list(reports) == ["W1", "b1", "W2", "b2"]
    assert all(isinstance(r, GradReport) and r.rel_error < 1e-7 for r in reports.values())
    assert_gradients(reports, tol=1e-6)


def test_a_derivative_off_by_a_factor_fails_the_network_check(rng, monkeypatch):
    """The floor forgives noise on tiny gradients, not a wrong derivative: tanh' 1% off."""
    network = build_network([2, 8, 8, 1], activation="tanh", output="sigmoid", cost="bce",
                            init="glorot_uniform", rng=rng)
    x, y = rng.standard_normal((8, 2)), rng.integers(0, 2, (8, 1)).astype(float)
    assert_gradients(check_network(network, x, y))

    def off_by_one_percent(a, da, out=None):
        return np.multiply(da, 1.01 * (1 - a * a), out=out)

    monkeypatch.setattr(activations.Tanh, "derivative", staticmethod(off_by_one_percent))
    reports = check_network(network, x, y)
    with pytest.raises(GradientCheckError) as error:
        assert_gradients(reports)
    assert error.value.param in ("W1", "b1", "W2", "b2")
    assert error.value.rel_error > 1e-3
    assert reports["W3"].rel_error <= DEFAULT_TOLERANCE  # the last layer has no tanh'


class BrokenDense(Dense):
    """dW off by 10% in one entry: the checker must name W and that index."""

    def accumulate_grads(self, dout, *, overwrite=False):
        super().accumulate_grads(dout, overwrite=overwrite)
        self.grads["W"][1, 2] *= 1.1


def test_broken_gradient_is_named_with_index_and_both_values(rng):
    layer = BrokenDense(3, 4, init="glorot_uniform", rng=rng)
    reports = check_layer(layer, rng.standard_normal((5, 3)), rng=rng)
    with pytest.raises(GradientCheckError) as error:
        assert_gradients(reports, tol=1e-6)
    failure = error.value
    assert failure.param == "W" and failure.index == (1, 2)
    assert failure.analytic == pytest.approx(1.1 * failure.numeric, rel=1e-6)
    assert "gradient of W at (1, 2)" in str(failure)
    assert reports["b"].rel_error < 1e-7 and reports["x"].rel_error < 1e-7
