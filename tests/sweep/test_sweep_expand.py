"""Expanding a spec into trials: grid sizes, repeats, random search, duplicates, refusals."""

from __future__ import annotations

import pytest

from nnchain.errors import SpecError
from nnchain.sweep import expand, parse_sweep_spec, repeat_seed


def make_spec(parameters=None, **top):
    data = {
        "name": "s",
        "data": {"name": "xor", "n_samples": 100, "val_fraction": 0.25},
        "model": {"hidden": [4]},
        "train": {"epochs": 5, "lr": 0.5},
        "parameters": parameters or {},
        **top,
    }
    return parse_sweep_spec(data)


def test_grid_size_and_order():
    spec = make_spec({"train.lr": {"values": [0.1, 0.5, 1.0]},
                      "model.hidden": {"values": [[2], [4], [8]]},
                      "model.activation": {"value": "relu"}})
    trials = expand(spec)
    assert len(trials) == 9
    assert [t.index for t in trials] == list(range(9))
    assert trials[0].overrides == {"train.lr": 0.1, "model.hidden": [2],
                                   "model.activation": "relu"}
    assert trials[1].overrides["model.hidden"] == [4]  # the last parameter varies fastest
    assert all(t.config["model"]["activation"] == "relu" for t in trials)
    assert [t.config["train"]["lr"] for t in trials[::3]] == [0.1, 0.5, 1.0]
    assert len({t.key for t in trials}) == 9


def test_no_parameters_is_one_trial_of_the_base():
    (trial,) = expand(make_spec())
    assert trial.overrides == {} and trial.config["train"]["lr"] == 0.5


def test_parameter_wins_over_base():
    trials = expand(make_spec({"train.lr": {"value": 0.01}}))
    assert trials[0].config["train"]["lr"] == 0.01


def test_repeats_derive_distinct_seeds_deterministically():
    spec = make_spec({"train.lr": {"values": [0.1, 0.5]}}, repeats=3, seed=7)
    trials = expand(spec)
    assert len(trials) == 6
    assert [t.repeat for t in trials] == [0, 0, 1, 1, 2, 2]  # repeats are the outer loop
    seeds = [t.config["seed"] for t in trials]
    assert seeds[0] == seeds[1] != seeds[2]
    assert len(set(seeds)) == 3
    assert all(t.overrides["seed"] == t.config["seed"] for t in trials)
    assert seeds == [t.config["seed"] for t in expand(spec)]
    assert seeds[0] == repeat_seed(7, 0) != repeat_seed(8, 0)
    # raising repeats keeps the earlier repeats' trials
    more = expand(make_spec({"train.lr": {"values": [0.1, 0.5]}}, repeats=4, seed=7))
    assert [t.key for t in more[:6]] == [t.key for t in trials]


def test_single_repeat_trains_with_the_spec_seed():
    trials = expand(make_spec({"train.lr": {"values": [0.1]}}, seed=5))
    assert trials[0].config["seed"] == 5 and "seed" not in trials[0].overrides


def test_duplicates_collapse_keeping_the_first():
    # momentum is dropped for adam, so two momentum values resolve to one config
    spec = make_spec({"train.optimizer": {"values": ["adam", "momentum"]},
                      "train.momentum": {"values": [0.5, 0.9]}})
    trials = expand(spec)
    assert len(trials) == 3
    assert trials[0].overrides == {"train.optimizer": "adam", "train.momentum": 0.5}
    assert [t.index for t in trials] == [0, 1, 2]


def test_invalid_cell_names_its_overrides():
    spec = make_spec({"train.lr": {"values": [0.1, -1]}, "model.hidden": {"values": [[4]]}})
    with pytest.raises(SpecError) as info:
        expand(spec)
    assert str(info.value) == ("parameters (cell train.lr=-1, model.hidden=[4]): "
                               "train.lr: must be > 0, got -1.0")


def test_invalid_cross_field_cell():
    spec = make_spec({"model.cost": {"values": ["bce", "mse"]},
                      "data.name": {"values": ["xor", "digits"]}})
    with pytest.raises(SpecError, match=r"^parameters \(cell model.cost=bce, data.name=digits\)"):
        expand(spec)


def test_max_trials_refusal_mentions_the_size():
    spec = make_spec({"train.lr": {"values": [0.1, 0.2, 0.3]},
                      "model.hidden": {"values": [[1], [2], [3], [4]]}}, repeats=2)
    with pytest.raises(SpecError, match="24 trials") as info:
        expand(spec, max_trials=20)
    assert info.value.field == "parameters"
    assert len(expand(spec, max_trials=24)) == 24


def test_large_grid_refused_before_expanding():
    values = {"values": list(range(1, 101))}
    spec = make_spec({"train.epochs": values, "data.n_samples": {"values": list(range(4, 104))},
                      "train.step_size": values})
    with pytest.raises(SpecError, match="1000000 trials"):
        expand(spec)


def test_val_metric_needs_a_validation_split():
    spec = make_spec({"data.val_fraction": {"values": [0.2, 0.0]}})
    with pytest.raises(SpecError, match=r"data.val_fraction=0.0\): metric.name: val_cost"):
        expand(spec)
    assert len(expand(make_spec({"data.val_fraction": {"values": [0.2, 0.0]}},
                                metric={"name": "train_cost"}))) == 2


def random_spec(seed=0, run_cap=6, **parameters):
    parameters = parameters or {
        "train.lr": {"distribution": "log_uniform", "min": 1e-3, "max": 1},
        "model.activation": {"values": ["tanh", "relu"]},
    }
    return make_spec(parameters, method="random", run_cap=run_cap, seed=seed)


def test_random_search_deterministic_under_a_seed():
    first = expand(random_spec(seed=3))
    again = expand(random_spec(seed=3))
    other = expand(random_spec(seed=4))
    assert len(first) == 6
    assert [t.key for t in first] == [t.key for t in again]
    assert [t.key for t in first] != [t.key for t in other]
    lrs = [t.config["train"]["lr"] for t in first]
    assert all(1e-3 <= lr <= 1 for lr in lrs)
    assert all(isinstance(lr, float) for lr in lrs)


def test_random_finite_space_sampled_without_replacement():
    parameters = {"train.lr": {"values": [0.1, 0.2, 0.3]},
                  "train.epochs": {"distribution": "int_uniform", "min": 1, "max": 3}}
    spec = make_spec(parameters, method="random")
    trials = expand(spec)
    assert spec.run_cap == 9 and len(trials) == 9
    cells = {(t.config["train"]["lr"], t.config["train"]["epochs"]) for t in trials}
    assert len(cells) == 9
    part = expand(make_spec(parameters, method="random", run_cap=5, seed=1))
    assert len({t.key for t in part}) == 5


def test_random_quantised_distribution():
    spec = make_spec({"train.epochs": {"distribution": "q_uniform", "min": 10, "max": 50,
                                       "q": 10},
                      "train.lr": {"distribution": "q_log_uniform", "min": 0.01, "max": 1,
                                   "q": 0.01}},
                     method="random", run_cap=8)
    for trial in expand(spec):
        epochs, lr = trial.config["train"]["epochs"], trial.config["train"]["lr"]
        assert isinstance(epochs, int) and epochs in (10, 20, 30, 40, 50)
        assert 0.01 <= lr <= 1 and round(lr, 2) == lr


def test_random_run_cap_over_max_trials_refused():
    with pytest.raises(SpecError) as info:
        expand(random_spec(run_cap=50), max_trials=10)
    assert info.value.field == "run_cap" and "50 trials" in str(info.value)


def test_random_small_quantised_space_cannot_fill_run_cap():
    spec = random_spec(run_cap=5, **{
        "train.lr": {"distribution": "q_uniform", "min": 0.1, "max": 0.2, "q": 0.1}})
    with pytest.raises(SpecError) as info:
        expand(spec)
    assert info.value.field == "run_cap"


def test_file_dataset_task_is_learned_once(monkeypatch, tmp_path):
    calls = []

    def fake_task_of(data):
        calls.append(data)
        return ("regression", 0) if data.get("name") is None else ("binary", 2)

    monkeypatch.setattr("nnchain.sweep.expansion.task_of", fake_task_of)
    data = {"path": str(tmp_path / "houses.npz"), "val_fraction": 0.2}
    spec = parse_sweep_spec({"name": "s", "data": data,
                             "parameters": {"train.lr": {"values": [0.1, 0.2, 0.3]}}})
    trials = expand(spec)
    assert len(trials) == 3 and len(calls) == 1
    assert trials[0].config["model"]["cost"] == "mse"
    spec = parse_sweep_spec({"name": "s", "data": data, "metric": {"name": "val_accuracy"},
                             "parameters": {"train.lr": {"values": [0.1]}}})
    with pytest.raises(SpecError, match="metric.name: val_accuracy needs a classification"):
        expand(spec)
