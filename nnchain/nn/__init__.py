"""The numpy chain-rule engine: dense layers, activations, costs, optimizers, training loop.

Imports numpy only. Shapes are batch first: x: (n, d_in), W: (d_in, d_out), b: (d_out,).

    rng = np.random.default_rng(0)
    network = build_network([2, 16, 2], activation="relu", output="softmax",
                            cost="cross_entropy", init="he_normal", rng=rng)
    optimizer = make_optimizer("adam", network, lr=0.01)
    for record in train_epochs(network, optimizer, x, y_onehot, epochs=100,
                               batch_size=32, rng=rng, accuracy=True):
        print(record.epoch, record.metrics["train_cost"])

Registries map names to classes (ACTIVATIONS, COSTS, OPTIMIZERS) or functions
(INITIALIZERS, SCHEDULES); activations are instantiated per layer since they cache.
"""

from __future__ import annotations

from nnchain.nn.activations import ACTIVATIONS, Activation
from nnchain.nn.costs import COSTS, Cost
from nnchain.nn.gradcheck import GradReport, assert_gradients, check_network
from nnchain.nn.init import INITIALIZERS
from nnchain.nn.layers import Dense
from nnchain.nn.network import Network, build_network
from nnchain.nn.optim import OPTIMIZERS, Optimizer, make_optimizer
from nnchain.nn.orders import UPDATE_ORDERS
from nnchain.nn.schedules import SCHEDULES, make_schedule
from nnchain.nn.train import EpochRecord, Position, train_epochs, train_step

__all__ = [
    "ACTIVATIONS",
    "COSTS",
    "INITIALIZERS",
    "OPTIMIZERS",
    "SCHEDULES",
    "UPDATE_ORDERS",
    "Activation",
    "Cost",
    "Dense",
    "EpochRecord",
    "GradReport",
    "Network",
    "Optimizer",
    "Position",
    "assert_gradients",
    "build_network",
    "check_network",
    "make_optimizer",
    "make_schedule",
    "train_epochs",
    "train_step",
]
