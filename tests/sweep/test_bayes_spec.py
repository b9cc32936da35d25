"""``method: bayes``: what the spec must hold, and every distribution through TPE."""

from __future__ import annotations

import pytest

from nnchain.errors import SpecError
from nnchain.sweep import expand, parse_sweep_spec
from nnchain.sweep.bayes import BayesSampler, to_params
from nnchain.sweep.expansion import bayes_template

BASE = {
    "name": "tpe",
    "method": "bayes",
    "run_cap": 8,
    "data": {"name": "xor", "n_samples": 40, "val_fraction": 0.25},
    "train": {"epochs": 5},
    "parameters": {
        "train.lr": {"distribution": "log_uniform", "min": 0.001, "max": 1.0},
        "train.weight_decay": {"distribution": "uniform", "min": 0.0, "max": 0.01},
        "train.batch_size": {"distribution": "int_uniform", "min": 4, "max": 16},
        "train.momentum": {"distribution": "q_uniform", "min": 0.5, "max": 0.9, "q": 0.1},
        "train.step_size": {"distribution": "q_log_uniform", "min": 10, "max": 1000,
                            "q": 10},
        "model.hidden": {"values": [[2], [4, 4]]},
        "model.activation": {"value": "tanh"},
    },
}


def test_every_distribution_is_proposed_inside_its_space_and_repeats_under_the_seed():
    spec = parse_sweep_spec(BASE)
    assert expand(spec) == [] and bayes_template(spec)["train"]["epochs"] == 5
    first, second = BayesSampler(spec), BayesSampler(spec)
    for step in range(12):
        ticket, cell = first.ask()
        _, again = second.ask()
        assert cell == again  # the sweep seed fixes the proposals
        assert 0.001 <= cell["train.lr"] <= 1.0 and 0 <= cell["train.weight_decay"] <= 0.01
        assert isinstance(cell["train.batch_size"], int) and 4 <= cell["train.batch_size"] <= 16
        assert round(cell["train.momentum"] * 10, 9) in {5, 6, 7, 8, 9}
        assert isinstance(cell["train.step_size"], int) and cell["train.step_size"] % 10 == 0
        assert cell["model.hidden"] in ([2], [4, 4]) and cell["model.activation"] == "tanh"
        assert to_params(spec, cell)["model.hidden"] in (0, 1)
        for sampler in (first, second):
            sampler.study.tell(sampler.study.trials[step].number, float(step % 3))


@pytest.mark.parametrize(("change", "field", "text"), [
    ({"run_cap": None}, "run_cap", "is required for method: bayes"),
    ({"repeats": 2}, "repeats", "bayes proposes each trial once"),
    ({"parameters": {"data.noise": {"values": [0.1, 0.2]}}}, "parameters.data.noise",
     "one dataset"),
    ({"parameters": {"train.lr": {"distribution": "uniform", "min": 0.1, "max": 0.1}}},
     "parameters.train.lr", "needs min < max"),
])
def test_what_tpe_cannot_take_is_one_line_naming_the_field(change, field, text):
    data = {**BASE, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(SpecError) as info:
        parse_sweep_spec(data)
    assert info.value.field == field and text in str(info.value)
