"""``early_terminate`` in the sweep spec: parsed, and each bad value one line naming it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nnchain.cli.main import main
from nnchain.errors import SpecError
from nnchain.sweep import parse_sweep_spec
from nnchain.sweep.pruning import EarlyTerminate
from nnchain.sweep.spec import apply_spec_overrides

BASE = {
    "name": "et",
    "data": {"name": "xor", "n_samples": 40, "val_fraction": 0.25},
    "model": {"hidden": [2]},
    "train": {"epochs": 9},
    "parameters": {"train.lr": {"values": [0.1, 0.5]}},
}


def parse(rule):
    return parse_sweep_spec({**BASE, "early_terminate": rule})


def test_early_terminate_is_read_with_defaults():
    assert parse({"type": "hyperband", "min_iter": 2, "eta": 2}).early_terminate == \
        EarlyTerminate("hyperband", 2, 2)
    assert parse({"type": "median"}).early_terminate == EarlyTerminate("median", 1, 3)
    assert parse_sweep_spec(BASE).early_terminate is None
    data = apply_spec_overrides({**BASE, "early_terminate": {"type": "asha"}},
                                ["early_terminate.min_iter=3"])
    assert parse_sweep_spec(data).early_terminate == EarlyTerminate("asha", 3, 3)


@pytest.mark.parametrize(("rule", "field", "text"), [
    ({"type": "hyperband", "min_iter": 9}, "early_terminate.min_iter",
     "must be < train.epochs (9), got 9"),
    ({"type": "asha", "eta": 1}, "early_terminate.eta", "must be >= 2, got 1"),
    ({"type": "asha", "eta": 2.5}, "early_terminate.eta", "must be an integer >= 2"),
    ({"type": "hyperbnd"}, "early_terminate.type", "did you mean"),
    ({"min_iter": 2}, "early_terminate.type", "is required"),
    ({"type": "asha", "min_iters": 2}, "early_terminate.min_iters", "did you mean"),
    ("hyperband", "early_terminate", "must be a mapping"),
])
def test_bad_early_terminate_names_its_field(rule, field, text):
    with pytest.raises(SpecError) as info:
        parse(rule)
    assert info.value.field == field and text in str(info.value)
    assert "\n" not in str(info.value)


def test_a_swept_epoch_count_is_refused():
    data = {**BASE, "early_terminate": {"type": "asha"},
            "parameters": {"train.epochs": {"values": [5, 9]}}}
    with pytest.raises(SpecError, match="parameters.train.epochs") as info:
        parse_sweep_spec(data)
    assert info.value.field == "early_terminate"


def test_a_metric_not_logged_every_epoch_is_refused(monkeypatch):
    from nnchain.sweep import spec

    monkeypatch.setattr(spec, "EPOCH_METRICS", ("train_cost",))
    with pytest.raises(SpecError, match="needs a metric logged every epoch") as info:
        parse({"type": "asha"})
    assert info.value.field == "early_terminate"


def test_the_cli_says_one_line_exits_2_and_writes_nothing(runs_home):
    spec = runs_home / "et.yaml"
    spec.write_text("name: et\ndata: {name: xor, n_samples: 40, val_fraction: 0.25}\n"
                    "train: {epochs: 4}\nearly_terminate: {type: asha, min_iter: 2, eta: 1}\n"
                    "parameters:\n  train.lr: {values: [0.1, 0.5]}\n")
    result = CliRunner().invoke(main, ["sweep", "run", str(spec)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: early_terminate.eta: must be >= 2, got 1"]
    assert not (runs_home / "nnchain-runs").exists()
