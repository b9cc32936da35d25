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


def test_update_orders_and_tracked_kinds_come_from_the_engine():
    from nnchain.nn import UPDATE_ORDERS
    from nnchain.nn.diagnostics import DEFAULT_KINDS

    assert config.FIELDS["train.update_order"].choices == UPDATE_ORDERS
    assert config.FIELDS["train.track"].default == list(DEFAULT_KINDS)


def test_default_order_and_no_layer_lr_leave_the_resolved_config_as_before():
    """Trial keys of existing sweeps must not move: the defaults are not recorded."""
    base = {"data": {"name": "xor"}}
    resolved = config.resolve_config(base)
    assert "update_order" not in resolved["train"] and "layer_lr" not in resolved["train"]
    explicit = config.resolve_config({**base, "train": {"update_order": "simultaneous"}})
    assert explicit == resolved
    ordered = config.resolve_config({**base, "model": {"hidden": [4, 3]},
                                     "train": {"update_order": "output_first",
                                               "layer_lr": [4, 2, 1]}})
    assert ordered["train"]["update_order"] == "output_first"
    assert ordered["train"]["layer_lr"] == [4.0, 2.0, 1.0]


BAD_TRAINING = {
    "unknown order": ("train: {update_order: backwards}", "train.update_order",
                      "simultaneous, output_first, input_first"),
    "layer_lr length": ("model: {hidden: [4]}\ntrain: {layer_lr: [1, 1, 1]}",
                        "train.layer_lr", "one multiplier per dense layer, 2"),
    "layer_lr zero": ("train: {layer_lr: [1, 0]}", "train.layer_lr", "> 0"),
    "layer_lr text": ("train: {layer_lr: fast}", "train.layer_lr", "list of numbers"),
    "effect float32": ("model: {dtype: float32}\ntrain: {track: [effect]}", "train.track",
                       "float64"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAINING))
def test_bad_order_options_are_one_line_exit_2_and_write_nothing(runs_home, case):
    from click.testing import CliRunner

    from nnchain.cli.main import main

    text, field, phrase = BAD_TRAINING[case]
    spec = runs_home / "bad.yaml"
    spec.write_text(f"data: {{name: xor}}\n{text}\n")
    result = CliRunner().invoke(main, ["train", str(spec), "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and phrase in lines[0], lines
    assert not (runs_home / "nnchain-runs").exists()


@pytest.mark.parametrize("order", ["output_first", "input_first"])
def test_gradcheck_takes_each_layer_as_the_order_does(order):
    from nnchain.gradients import check_spec

    resolved = config.resolve_config({"data": {"name": "spirals", "n_samples": 40},
                                      "model": {"hidden": [5, 4]},
                                      "train": {"update_order": order}})
    reports = check_spec(resolved)
    assert set(reports) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert max(report.rel_error for report in reports.values()) < 1e-5
