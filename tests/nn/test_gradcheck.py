"""The gradient checker itself: it passes correct gradients and names broken ones."""

from __future__ import annotations

import numpy as np
import pytest

from nnchain.errors import GradientCheckError
from nnchain.nn import Dense, build_network, check_network
from nnchain.nn.gradcheck import (
    GradReport,
    assert_gradients,
    check_layer,
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
    assert relative_error(np.array([1.0]), np.array([3.0]))[0] == pytest.approx(0.5)
    assert relative_error(np.array([0.0]), np.array([0.0]))[0] == 0.0


def test_check_network_reports_every_parameter(rng):
    network = build_network([2, 3, 2], activation="tanh", output="softmax",
                            cost="cross_entropy", init="glorot_uniform", rng=rng)
    reports = check_network(network, rng.standard_normal((4, 2)), np.eye(2)[[0, 1, 1, 0]])
    assert list(reports) == ["W1", "b1", "W2", "b2"]
    assert all(isinstance(r, GradReport) and r.rel_error < 1e-7 for r in reports.values())
    assert_gradients(reports, tol=1e-6)


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
