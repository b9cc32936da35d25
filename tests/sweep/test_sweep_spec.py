"""Parsing a sweep spec: every bad input is one SpecError naming its field."""

from __future__ import annotations

import copy

import pytest

from nnchain.config import apply_overrides, parse_override
from nnchain.errors import SpecError
from nnchain.sweep import Distribution, Metric, Value, Values, load_sweep_spec, parse_sweep_spec
from nnchain.sweep.spec import spec_kind

BASE = {
    "name": "xor-grid",
    "data": {"name": "xor", "n_samples": 200, "val_fraction": 0.25},
    "model": {"hidden": [4], "activation": "tanh"},
    "train": {"epochs": 300, "lr": 0.5},
    "parameters": {"train.lr": {"values": [0.1, 0.5]}},
}


def spec_dict(**changes):
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def field_of(data) -> str:
    with pytest.raises(SpecError) as info:
        parse_sweep_spec(data)
    assert "\n" not in str(info.value)
    return info.value.field


def test_defaults():
    spec = parse_sweep_spec(spec_dict())
    assert spec.experiment == "xor-grid"
    assert (spec.seed, spec.method, spec.repeats, spec.max_retries) == (0, "grid", 1, 2)
    assert spec.metric == Metric("val_cost", "minimize")
    assert spec.run_cap is None and spec.trial_timeout is None
    assert spec.base["seed"] == 0 and spec.base["train"]["lr"] == 0.5
    assert spec.parameters == {"train.lr": Values((0.1, 0.5))}


def test_accuracy_metric_defaults_to_maximize():
    spec = parse_sweep_spec(spec_dict(metric={"name": "val_accuracy"}))
    assert spec.metric == Metric("val_accuracy", "maximize")


@pytest.mark.parametrize(("changes", "field"), [
    ({"name": None}, "name"),
    ({"name": "a/b"}, "name"),
    ({"name": "a..b"}, "name"),
    ({"name": ".."}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": "has space"}, "name"),
    ({"name": "-dash-first"}, "name"),
    ({"name": "x" * 100 + "y"}, "name"),
    ({"experiment": "has space"}, "experiment"),
    ({"experiment": "../up"}, "experiment"),
    ({"methd": "grid"}, "methd"),
    ({"method": "bayesian"}, "method"),
    ({"method": "bayes"}, "run_cap"),  # bayes needs a run_cap
    ({"metric": {"name": "val_loss"}}, "metric.name"),
    ({"metric": {"name": "val_cost", "goal": "lowest"}}, "metric.goal"),
    ({"metric": {"name": "val_cost", "mode": "min"}}, "metric.mode"),
    ({"metric": "val_cost"}, "metric"),
    ({"seed": -1}, "seed"),
    ({"repeats": 0}, "repeats"),
    ({"repeats": 1.5}, "repeats"),
    ({"max_retries": -1}, "max_retries"),
    ({"trial_timeout": 0}, "trial_timeout"),
    ({"trial_timeout": True}, "trial_timeout"),
    ({"run_cap": 5}, "run_cap"),  # grid
    ({"train": {"lrr": 0.1}}, "train.lrr"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"model": [4]}, "model"),
    ({"parameters": [1, 2]}, "parameters"),
])
def test_bad_top_level(changes, field):
    assert field_of(spec_dict(**changes)) == field


def test_unknown_top_level_key_suggests():
    with pytest.raises(SpecError, match="did you mean 'method'"):
        parse_sweep_spec(spec_dict(methd="grid"))


def test_unknown_parameter_key_suggests():
    data = spec_dict(parameters={"train.learning_rat": {"values": [0.1]}})
    with pytest.raises(SpecError) as info:
        parse_sweep_spec(data)
    assert info.value.field == "parameters.train.learning_rat"


@pytest.mark.parametrize("space", [
    {"values": []},
    {"values": 0.1},
    [0.1, 0.5],
    {"values": [0.1], "value": 0.1},
    {},
    {"values": [0.1], "min": 0},
    {"valuse": [0.1]},
    {"distribution": "normal", "min": 0.1, "max": 1},
    {"distribution": "uniform", "min": 1.0, "max": 0.1},
    {"distribution": "uniform", "min": 0.1},
    {"distribution": "uniform", "min": "a", "max": 1},
    {"distribution": "log_uniform", "min": 0, "max": 1},
    {"distribution": "q_uniform", "min": 0.1, "max": 1},
    {"distribution": "q_uniform", "min": 0.1, "max": 1, "q": 0},
    {"distribution": "uniform", "min": 0.1, "max": 1, "q": 0.1},
    {"distribution": "int_uniform", "min": 0.5, "max": 3},
    {"distribution": "uniform", "min": -1, "max": 1},  # lr must be > 0
])
def test_bad_parameter_space(space):
    data = spec_dict(method="random", run_cap=3, parameters={"train.lr": space})
    assert field_of(data) == "parameters.train.lr"


def test_min_max_message():
    data = spec_dict(method="random", run_cap=3, parameters={
        "train.lr": {"distribution": "uniform", "min": 1.0, "max": 0.1}})
    with pytest.raises(SpecError) as info:
        parse_sweep_spec(data)
    assert str(info.value) == "parameters.train.lr: min <= max must hold, got min=1.0, max=0.1"


def test_distribution_kind_must_fit_the_key():
    data = spec_dict(method="random", run_cap=3, parameters={
        "model.activation": {"distribution": "uniform", "min": 0, "max": 1}})
    assert field_of(data) == "parameters.model.activation"
    data = spec_dict(method="random", run_cap=3, parameters={
        "train.epochs": {"distribution": "uniform", "min": 10, "max": 20}})
    assert field_of(data) == "parameters.train.epochs"


def test_distribution_with_grid_refused():
    data = spec_dict(parameters={"train.lr": {"distribution": "uniform", "min": 0.1, "max": 1}})
    assert field_of(data) == "parameters.train.lr"


def test_random_continuous_needs_run_cap():
    data = spec_dict(method="random", parameters={
        "train.lr": {"distribution": "log_uniform", "min": 1e-3, "max": 1}})
    assert field_of(data) == "run_cap"


def test_random_finite_run_cap_defaults_to_and_is_capped_by_space_size():
    parameters = {"train.lr": {"values": [0.1, 0.2, 0.3]},
                  "train.epochs": {"distribution": "int_uniform", "min": 1, "max": 4}}
    assert parse_sweep_spec(spec_dict(method="random", parameters=parameters)).run_cap == 12
    spec = parse_sweep_spec(spec_dict(method="random", run_cap=50, parameters=parameters))
    assert spec.run_cap == 12
    spec = parse_sweep_spec(spec_dict(method="random", run_cap=5, parameters=parameters))
    assert spec.run_cap == 5


def test_repeats_with_seed_parameter_refused():
    data = spec_dict(repeats=2, parameters={"seed": {"values": [0, 1]}})
    assert field_of(data) == "repeats"


def test_swept_base_value_is_not_checked():
    # the parameter wins, so an invalid base value under it is never used
    data = spec_dict(train={"lr": -1.0})
    assert parse_sweep_spec(data).base["train"]["lr"] == -1.0


def test_parameter_spaces_parsed():
    spec = parse_sweep_spec(spec_dict(method="random", run_cap=4, parameters={
        "model.activation": {"value": "relu"},
        "train.weight_decay": {"distribution": "log_uniform", "min": 1e-6, "max": 1e-2},
        "train.epochs": {"distribution": "q_uniform", "min": 10, "max": 50, "q": 10},
    }))
    assert spec.parameters["model.activation"] == Value("relu")
    decay = spec.parameters["train.weight_decay"]
    assert decay == Distribution("log_uniform", 1e-6, 1e-2)
    assert spec.parameters["train.epochs"].integer


def write(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_load_reads_exponent_as_float_and_keeps_text(tmp_path):
    text = ("name: r\nmethod: random\nrun_cap: 3\ndata: {name: xor}\n"
            "parameters:\n  train.lr: {distribution: log_uniform, min: 1e-3, max: 1}\n")
    spec = load_sweep_spec(write(tmp_path, text))
    assert spec.parameters["train.lr"].min == 1e-3
    assert isinstance(spec.parameters["train.lr"].min, float)
    assert spec.text == text


def test_load_overrides(tmp_path):
    path = write(tmp_path, "name: r\ndata: {name: xor}\n"
                           "parameters:\n  train.lr: {values: [0.1, 0.2]}\n")
    spec = load_sweep_spec(path, ["train.epochs=10", "repeats=2", "metric.goal=maximize",
                                  "parameters.train.lr={values: [0.3]}", "name=other"])
    assert spec.base["train"]["epochs"] == 10
    assert spec.repeats == 2 and spec.name == "other"
    assert spec.metric.goal == "maximize"
    assert spec.parameters["train.lr"] == Values((0.3,))
    assert spec.overrides[0] == "train.epochs=10"


@pytest.mark.parametrize(("override", "field"), [
    ("train.epoch=10", "train.epoch"),
    ("runcap=5", "runcap"),
    ("no-equals", "--set"),
    ("train.lr=0.3", "train.lr"),  # swept: a base value would be ignored
    ("metric.mode=max", "metric.mode"),
    ("parameters.train.lrr={values: [1]}", "parameters.train.lrr"),
])
def test_bad_overrides(tmp_path, override, field):
    path = write(tmp_path, "name: r\ndata: {name: xor}\n"
                           "parameters:\n  train.lr: {values: [0.1, 0.2]}\n")
    with pytest.raises(SpecError) as info:
        load_sweep_spec(path, [override])
    assert info.value.field == field


def test_load_missing_file(tmp_path):
    with pytest.raises(SpecError):
        load_sweep_spec(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("data", "kind"), [
    ({"seed": 0, "data": {"name": "xor"}, "model": {}, "train": {}}, "training"),
    ({}, "training"),
    ({"name": "a", "data": {"name": "xor"}}, "sweep"),
    ({"data": {"name": "xor"}, "parameters": {}}, "sweep"),
    ({"data": {"name": "xor"}, "method": "grid"}, "sweep"),
    ({"data": {"name": "xor"}, "metric": {"name": "val_cost"}}, "sweep"),
])
def test_spec_kind(data, kind):
    assert spec_kind(data) == kind


def test_a_training_spec_given_as_a_sweep_names_nnchain_train(tmp_path):
    path = write(tmp_path, "data: {name: xor}\ntrain: {epochs: 5}\n")
    with pytest.raises(SpecError) as info:
        load_sweep_spec(path, ["train.epochs=3"])
    assert info.value.field == str(path)
    assert f"is a training spec (no `name` or `parameters`); run it with `nnchain train {path}`" \
        in str(info.value)


def test_one_override_reader_for_training_and_sweep_specs(tmp_path):
    assert parse_override(" train.lr = 0.3") == ("train.lr", 0.3)
    assert parse_override("model.hidden=[8, 8]") == ("model.hidden", [8, 8])
    assert parse_override("train.batch_size=null") == ("train.batch_size", None)
    path = write(tmp_path, "name: r\ndata: {name: xor}\n")
    for bad in ("no-equals", "=0.3"):
        with pytest.raises(SpecError) as sweep_error:
            load_sweep_spec(path, [bad])
        with pytest.raises(SpecError) as train_error:
            apply_overrides({"data": {"name": "xor"}}, [bad])
        assert str(sweep_error.value) == str(train_error.value)
