"""The engine's cost and gradients against PyTorch autograd on the same weights and batch.

PyTorch is a reference for tests and benchmarks only, never a dependency: skipped if absent.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnchain.nn import build_network

torch = pytest.importorskip("torch")
functional = torch.nn.functional

HIDDEN = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
          "leaky_relu": lambda z: functional.leaky_relu(z, negative_slope=0.01)}


def torch_cost(z, y, output: str, cost: str):
    """Batch mean of the per-sample loss of costs.py, from the output pre-activation z."""
    if (output, cost) == ("softmax", "cross_entropy"):
        return functional.cross_entropy(z, y)  # y: rows of class probabilities
    if (output, cost) == ("sigmoid", "bce"):
        return functional.binary_cross_entropy_with_logits(z, y, reduction="none").sum(1).mean()
    return 0.5 * ((z - y) ** 2).sum(1).mean()  # identity + mse


@pytest.mark.parametrize("hidden", sorted(HIDDEN))
@pytest.mark.parametrize("output, cost", [("softmax", "cross_entropy"), ("sigmoid", "bce"),
                                          ("identity", "mse")])
@pytest.mark.parametrize("sizes", [[3, 8, 5, 4], [20, 64, 48, 10]])
def test_cost_and_gradients_equal_pytorch(hidden, output, cost, sizes):
    rng = np.random.default_rng(sum(sizes))
    network = build_network(sizes, activation=hidden, output=output, cost=cost,
                            init="glorot_uniform", rng=rng)
    for _, param, _ in network.parameters():  # biases off zero
        param += rng.uniform(-0.1, 0.1, param.shape)
    n, k = 32, sizes[-1]
    x = rng.standard_normal((n, sizes[0]))
    if cost == "cross_entropy":
        y = np.eye(k)[rng.integers(0, k, n)]
    elif cost == "bce":
        y = rng.integers(0, 2, (n, k)).astype(float)
    else:
        y = rng.standard_normal((n, k))
    for _ in range(2):  # the second pass reuses the batch size's work buffers
        value = network.forward_backward(x, y)

    params = {name: torch.tensor(param, requires_grad=True)
              for name, param, _ in network.parameters()}
    a = torch.from_numpy(x)
    depth = len(sizes) - 1
    for i in range(1, depth + 1):
        z = a @ params[f"W{i}"] + params[f"b{i}"]
        a = HIDDEN[hidden](z) if i < depth else z
    loss = torch_cost(z, torch.from_numpy(y), output, cost)
    loss.backward()

    assert value == pytest.approx(float(loss.detach()), rel=1e-6)
    for name, _, grad in network.parameters():
        np.testing.assert_allclose(grad, params[name].grad.numpy(), rtol=1e-6, atol=1e-12,
                                   err_msg=name)
