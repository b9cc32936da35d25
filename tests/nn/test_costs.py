"""Contract suite for costs and output heads, and the fused pairs against the chain."""

from __future__ import annotations

import numpy as np
import pytest

from nnchain.nn import ACTIVATIONS, COSTS
from nnchain.nn.gradcheck import assert_gradients, check_cost, check_head
from nnchain.nn.heads import ChainedHead, SigmoidBCE, SoftmaxCrossEntropy, make_head

NAMES = sorted(COSTS)
FUSED = [("sigmoid", "bce", SigmoidBCE), ("softmax", "cross_entropy", SoftmaxCrossEntropy)]


def predictions_and_targets(name: str, rng: np.random.Generator, n: int = 6, k: int = 3):
    """Valid (pred, target) for each cost: probabilities away from 0 and 1 for the logs."""
    if name == "cross_entropy":
        pred = rng.uniform(0.1, 1.0, size=(n, k))
        pred /= pred.sum(axis=1, keepdims=True)
        return pred, np.eye(k)[rng.integers(0, k, n)]
    if name == "bce":
        return rng.uniform(0.05, 0.95, size=(n, k)), rng.integers(0, 2, (n, k)).astype(float)
    return rng.standard_normal((n, k)), rng.standard_normal((n, k))


@pytest.mark.parametrize("name", NAMES)
def test_value_is_a_float_and_grad_has_pred_shape(name, rng):
    pred, target = predictions_and_targets(name, rng)
    cost = COSTS[name]()
    assert cost.name == name
    assert isinstance(cost.value(pred, target), float)
    assert cost.grad(pred, target).shape == pred.shape


@pytest.mark.parametrize("name", NAMES)
def test_gradient_check(name, rng):
    pred, target = predictions_and_targets(name, rng)
    assert_gradients(check_cost(COSTS[name](), pred, target), tol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_inputs_not_modified(name, rng):
    pred, target = predictions_and_targets(name, rng)
    before = pred.copy(), target.copy()
    COSTS[name]().value(pred, target)
    COSTS[name]().grad(pred, target)
    np.testing.assert_array_equal(pred, before[0])
    np.testing.assert_array_equal(target, before[1])


@pytest.mark.parametrize("name", NAMES)
def test_cost_is_the_batch_mean(name, rng):
    """Repeating the batch keeps the value and halves each row's gradient."""
    pred, target = predictions_and_targets(name, rng)
    cost = COSTS[name]()
    doubled = np.concatenate([pred, pred]), np.concatenate([target, target])
    assert cost.value(*doubled) == pytest.approx(cost.value(pred, target), rel=1e-12)
    np.testing.assert_allclose(cost.grad(*doubled)[: len(pred)], cost.grad(pred, target) / 2)


@pytest.mark.parametrize("name", NAMES)
def test_float32_stays_float32(name, rng):
    pred, target = (a.astype(np.float32) for a in predictions_and_targets(name, rng))
    assert COSTS[name]().grad(pred, target).dtype == np.float32


def test_mse_convention():
    """mse = mean over samples of 1/2 sum of squares; its gradient (p - y) / n."""
    pred, target = np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [0.0, 1.0]])
    # per sample: 0.5 (1 + 4) = 2.5 and 0.5 (1) = 0.5; mean 1.5
    assert COSTS["mse"]().value(pred, target) == pytest.approx(1.5)
    np.testing.assert_allclose(COSTS["mse"]().grad(pred, target), (pred - target) / 2)


# ---------------------------------------------------------------- output heads
@pytest.mark.parametrize("activation, cost, fused_cls", FUSED)
def test_fused_pair_is_chosen_and_equals_the_chain(activation, cost, fused_cls, rng):
    fused = make_head(ACTIVATIONS[activation](), COSTS[cost]())
    chain = ChainedHead(ACTIVATIONS[activation](), COSTS[cost]())
    assert isinstance(fused, fused_cls)
    z = rng.standard_normal((7, 3))
    target = (np.eye(3)[rng.integers(0, 3, 7)] if cost == "cross_entropy"
              else rng.integers(0, 2, (7, 3)).astype(float))
    fused_cost, fused_dz = fused.loss_and_grad(z, target)
    chain_cost, chain_dz = chain.loss_and_grad(z, target)
    assert fused_cost == pytest.approx(chain_cost, rel=1e-12)
    np.testing.assert_allclose(fused_dz, chain_dz, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(fused.output, chain.output, rtol=1e-13)
    assert fused.value(z, target) == pytest.approx(fused_cost, rel=1e-14)


@pytest.mark.parametrize("activation, cost, fused_cls", FUSED)
def test_fused_gradient_is_p_minus_y_over_n(activation, cost, fused_cls, rng):
    z = rng.standard_normal((4, 3))
    target = np.eye(3)[[0, 1, 2, 0]]
    head = fused_cls()
    _, dz = head.loss_and_grad(z, target)
    np.testing.assert_allclose(dz, (head.predict(z) - target) / 4, rtol=1e-14)


@pytest.mark.parametrize("activation, cost, fused_cls", FUSED)
def test_fused_heads_are_stable_for_extreme_logits(activation, cost, fused_cls):
    z = np.array([[1000.0, -1000.0, 0.0], [-800.0, -800.0, -799.0]])
    target = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, dz = fused_cls().loss_and_grad(z, target)
    assert np.isfinite(value) and np.all(np.isfinite(dz))
    assert value > 100  # confidently wrong: a large, not an infinite, cost


# log costs need outputs in (0, 1): they pair with sigmoid and softmax only
HEADS = [(activation, cost) for activation in sorted(ACTIVATIONS) for cost in NAMES
         if cost == "mse" or activation in ("sigmoid", "softmax")]


@pytest.mark.parametrize("activation, cost", HEADS)
def test_every_head_gradient_checks(activation, cost, rng):
    head = make_head(ACTIVATIONS[activation](), COSTS[cost]())
    z = rng.uniform(0.1, 1.5, (5, 3)) * rng.choice([-1, 1], (5, 3))
    target = np.eye(3)[rng.integers(0, 3, 5)]
    # leaky_relu's 0.01 slope gives gradients near 1e-5, where central differences keep
    # only ~5 significant digits
    assert_gradients(check_head(head, z, target), tol=1e-5)


def test_softmax_cross_entropy_accepts_soft_labels(rng):
    z = rng.standard_normal((5, 4))
    target = rng.dirichlet(np.ones(4), size=5)
    assert_gradients(check_head(SoftmaxCrossEntropy(), z, target), tol=1e-6)
