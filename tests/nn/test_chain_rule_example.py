"""The worked example of docs/chain-rule.md: the engine gives the numbers printed there.

A 2-2-2-1 network, sigmoid after every layer, cost mse (1/2 (a3 - y)^2 for one sample).
The expected values are the doc's, to the digits it prints; the chain rule is also
written out here, product by product, and must equal the engine's gradient exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnchain.nn import build_network, make_optimizer, train_step

X, Y = [1.0, 0.5], 1.0
WEIGHTS = {
    "W1": [[0.15, 0.25], [0.20, 0.30]], "b1": [0.35, 0.35],
    "W2": [[0.40, 0.50], [0.45, 0.55]], "b2": [0.60, 0.60],
    "W3": [[0.30], [0.35]], "b3": [0.20],
}
# As printed in docs/chain-rule.md (6 significant digits).
DOC = {
    "a1": [0.645656, 0.679179], "a2": [0.762039, 0.785225], "a3": 0.668950,
    "cost": 0.0547970,
    "dC/da3": -0.331050, "da3/dz3": 0.221456, "delta3": -0.0733129,
    "delta2": [-0.00398827, -0.00432740], "delta1": [-0.000860002, -0.000909666],
    "dC/dW1[1,1]": -0.000860002, "dC/dW3[1,1]": -0.0558673,
    "W1[1,1] after": 0.150430,
}


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def network():
    net = build_network([2, 2, 2, 1], activation="sigmoid", output="sigmoid", cost="mse",
                        init="glorot_uniform", rng=np.random.default_rng(0))
    net.set_weights({name: np.array(value) for name, value in WEIGHTS.items()})
    return net


def by_hand() -> dict:
    """Forward values and the chain rule for W1[1,1] (input 1 to first-layer unit 1), in
    plain floats."""
    w = WEIGHTS
    a1 = [sigmoid(X[0] * w["W1"][0][j] + X[1] * w["W1"][1][j] + w["b1"][j]) for j in (0, 1)]
    a2 = [sigmoid(a1[0] * w["W2"][0][j] + a1[1] * w["W2"][1][j] + w["b2"][j]) for j in (0, 1)]
    a3 = sigmoid(a2[0] * w["W3"][0][0] + a2[1] * w["W3"][1][0] + w["b3"][0])
    dc_da3 = a3 - Y
    da3_dz3 = a3 * (1 - a3)
    delta3 = dc_da3 * da3_dz3
    delta2 = [delta3 * w["W3"][j][0] * a2[j] * (1 - a2[j]) for j in (0, 1)]
    delta1 = [sum(delta2[j] * w["W2"][i][j] for j in (0, 1)) * a1[i] * (1 - a1[i])
              for i in (0, 1)]
    return {"a1": a1, "a2": a2, "a3": a3, "cost": 0.5 * dc_da3 ** 2, "dC/da3": dc_da3,
            "da3/dz3": da3_dz3, "delta3": delta3, "delta2": delta2, "delta1": delta1,
            "dC/dW1[1,1]": delta1[0] * X[0], "dC/dW3[1,1]": delta3 * a2[0]}


def test_the_hand_computation_gives_the_doc_numbers():
    hand = by_hand()
    for key, printed in DOC.items():
        if key in hand:
            np.testing.assert_allclose(hand[key], printed, rtol=5e-6, err_msg=key)


def test_the_engine_gives_the_same_numbers():
    hand = by_hand()
    net = network()
    x, y = np.array([X]), np.array([[Y]])
    cost = net.forward_backward(x, y)
    assert cost == pytest.approx(hand["cost"], rel=1e-14)
    np.testing.assert_allclose(net.predict(x)[0, 0], hand["a3"], rtol=1e-14)
    grads = {name: grad.copy() for name, _, grad in net.parameters()}
    assert grads["W1"][0, 0] == pytest.approx(hand["dC/dW1[1,1]"], rel=1e-12)
    assert grads["W3"][0, 0] == pytest.approx(hand["dC/dW3[1,1]"], rel=1e-12)
    np.testing.assert_allclose(grads["b1"], hand["delta1"], rtol=1e-12)  # db = delta
    np.testing.assert_allclose(grads["b2"], hand["delta2"], rtol=1e-12)


def test_one_gradient_descent_step_moves_the_weight_downhill():
    net = network()
    x, y = np.array([X]), np.array([[Y]])
    train_step(net, make_optimizer("sgd", net, lr=0.5), x, y, lr=0.5)
    after = net.get_weights()["W1"][0, 0]
    assert after == pytest.approx(DOC["W1[1,1] after"], rel=5e-6)
    assert after == pytest.approx(0.15 - 0.5 * by_hand()["dC/dW1[1,1]"], rel=1e-14)
