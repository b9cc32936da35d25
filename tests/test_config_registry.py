"""The config schema's names are the engine's registries: one source per fact."""

from __future__ import annotations

import pytest

from nnchain import config
from nnchain.nn import ACTIVATIONS, COSTS, INITIALIZERS, OPTIMIZERS, SCHEDULES
from nnchain.nn.diagnostics import KINDS


def test_schema_names_equal_the_registries():
    assert set(config.ACTIVATION_NAMES) == set(ACTIVATIONS)
    assert set(config.COST_NAMES) == set(COSTS)
    assert set(config.OPTIMIZER_NAMES) == set(OPTIMIZERS)
    assert set(config.SCHEDULE_NAMES) == set(SCHEDULES)
    assert set(config.DIAGNOSTIC_NAMES) == set(KINDS)
    assert set(config.INIT_NAMES) | set(config.INIT_ALIASES) == set(INITIALIZERS)


def test_init_aliases_name_the_same_initialiser():
    for alias, canonical in config.INIT_ALIASES.items():
        assert canonical in config.INIT_NAMES
        assert INITIALIZERS[alias] is INITIALIZERS[canonical]


def test_every_choice_field_offers_exactly_the_registry():
    fields = config.FIELDS
    assert set(fields["model.activation"].choices) == set(ACTIVATIONS)
    assert set(fields["model.output"].choices) == {"auto", *ACTIVATIONS}
    assert set(fields["model.cost"].choices) == {"auto", *COSTS}
    assert set(fields["model.init"].choices) == {"auto", *INITIALIZERS}
    assert set(fields["train.optimizer"].choices) == set(OPTIMIZERS)
    assert set(fields["train.schedule"].choices) == set(SCHEDULES)
    assert set(fields["train.track"].choices) == set(KINDS)


def test_optimizer_keys_cover_every_optimizer_and_schedule():
    assert set(config.OPTIMIZER_KEYS) == set(OPTIMIZERS)
    assert set(config.SCHEDULE_KEYS) == set(SCHEDULES)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_config_builds_a_job(name):
    """The schema's hyperparameter keys are the ones each optimizer takes."""
    from nnchain.job import build_job

    job = build_job(config.resolve_config({"data": {"name": "xor", "n_samples": 8},
                                           "train": {"optimizer": name}}))
    assert job.optimizer.name == name
