"""The numpy chain-rule engine: dense layers, activations, costs, optimizers, training loop.

Imports numpy only. Shapes are batch first: x: (n, d_in), W: (d_in, d_out), b: (d_out,).
"""

from __future__ import annotations

from nnchain.nn.activations import ACTIVATIONS, Activation
from nnchain.nn.costs import COSTS, Cost
from nnchain.nn.gradcheck import GradReport, assert_gradients, check_network
from nnchain.nn.init import INITIALIZERS
from nnchain.nn.layers import Dense
from nnchain.nn.network import Network, build_network
from nnchain.nn.optim import OPTIMIZERS, Optimizer, make_optimizer
from nnchain.nn.schedules import SCHEDULES, make_schedule
from nnchain.nn.train import EpochRecord, train_epochs, train_step

__all__ = [
    "ACTIVATIONS",
    "COSTS",
    "INITIALIZERS",
    "OPTIMIZERS",
    "SCHEDULES",
    "Activation",
    "Cost",
    "Dense",
    "EpochRecord",
    "GradReport",
    "Network",
    "Optimizer",
    "assert_gradients",
    "build_network",
    "check_network",
    "make_optimizer",
    "make_schedule",
    "train_epochs",
    "train_step",
]
