"""The caps and bounded readers in-process: what passes, what is refused, how a cap is raised."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nnchain.checkpoint import pack_checkpoint, restore_checkpoint
from nnchain.config import resolve_config
from nnchain.data import load_dataset
from nnchain.errors import SpecError, shown
from nnchain.job import build_job
from nnchain.limits import CAPS, DEFAULT_MAX_TRIALS, ENV, caps, check_max_trials
from nnchain.weights import load_weights, save_weights
from nnchain.yamlio import parse_yaml

XOR = {"data": {"name": "xor", "n_samples": 8}, "model": {"hidden": [3]},
       "train": {"epochs": 1}}


def with_data(**data: object) -> dict:
    return {**XOR, "data": {**XOR["data"], **data}}


def test_a_cap_is_refused_by_name_and_raised_with_the_environment(monkeypatch) -> None:
    over = CAPS["n_samples"] + 1
    with pytest.raises(SpecError, match=f"data.n_samples: must be <= 1,000,000 .*{ENV}="):
        resolve_config(with_data(n_samples=over))
    monkeypatch.setenv(ENV, f"n_samples={over}, width=5000")
    assert resolve_config(with_data(n_samples=over))["data"]["n_samples"] == over
    assert caps()["width"] == 5000


@pytest.mark.parametrize("value", ["n_samples", "n_samples=0", "n_samples=1e6", "depth=3",
                                   "n_samples=99999999999999999999"])
def test_a_bad_limits_variable_is_one_line(monkeypatch, value: str) -> None:
    monkeypatch.setenv(ENV, value)
    with pytest.raises(SpecError, match=f"^{ENV}: "):
        caps()


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("model.hidden", [8] * 65, "model.hidden: must be <= 64 .*layers limit"),
    ("model.hidden", [8, 5000], r"model.hidden\[1\]: must be <= 4,096"),
    ("train.epochs", 10**6, "train.epochs: must be <= 100,000"),
    ("seed", 2**63, "seed: must fit a 64-bit integer"),
    ("train.lr", 10**400, "train.lr: must fit a 64-bit float"),
    ("data.noise", 1e200, "data.noise: must be <= 1e\\+100"),
])
def test_config_limits(key: str, value: object, expected: str) -> None:
    section, _, leaf = key.rpartition(".")
    raw = {**XOR, section: {**XOR.get(section, {}), leaf: value}} if section else \
        {**XOR, key: value}
    with pytest.raises(SpecError, match=expected):
        resolve_config(raw)


def test_max_trials_is_capped_at_100000_and_raised_with_the_environment(monkeypatch) -> None:
    assert DEFAULT_MAX_TRIALS == 10_000 and CAPS["trials"] == 100_000  # issue 17
    assert check_max_trials(100_000) == 100_000
    with pytest.raises(SpecError, match="^--max-trials: must be <= 100,000 \\(the trials limit; "
                                        f"raise it with {ENV}=trials=N\\), got 100,001$"):
        check_max_trials(100_001)
    monkeypatch.setenv(ENV, "trials=250000")
    assert check_max_trials(250_000) == 250_000


def test_the_largest_int64_passes() -> None:
    assert resolve_config({**XOR, "seed": 2**63 - 1})["seed"] == 2**63 - 1


def test_yaml_anchors_and_merges_work_within_the_budget() -> None:
    text = "base: &base {lr: 0.1, epochs: 3}\ntrain: {<<: *base, lr: 0.2}\nsame: *base\n"
    assert parse_yaml(text, "spec") == {"base": {"lr": 0.1, "epochs": 3},
                                        "train": {"lr": 0.2, "epochs": 3},
                                        "same": {"lr": 0.1, "epochs": 3}}


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(SpecError, match="alias must not refer to a collection that holds it"):
        parse_yaml("a: &a [1, *a]\n", "spec")


def test_shown_is_bounded() -> None:
    nested: list = ["lol"] * 9
    for _ in range(9):
        nested = [nested] * 9
    assert len(shown(nested)) <= 160
    assert shown(10**400) == "<integer of about 401 digits>"
    assert shown("x" * 10_000).count("x") < 100
    assert shown([0.1, "a"]) == "[0.1, 'a']"


def test_csv_rows_are_counted_as_they_stream(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("x,label\n" + "".join(f"{row},{row % 2}\n" for row in range(12)))
    monkeypatch.setenv(ENV, "n_samples=10")
    with pytest.raises(SpecError, match="at most 10 data rows .* got 11"):
        load_dataset(path=str(path), target="label", rng=np.random.default_rng(0))


def test_an_npz_member_shorter_than_its_header_is_refused_unread(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (1000, 10)})
    path = tmp_path / "short.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", header.getvalue() + bytes(80))
        archive.writestr("y.npy", header.getvalue())
    with pytest.raises(SpecError, match="X' of .* declares shape \\(1000, 10\\) \\(80,000 "
                                        "bytes\\) but holds 80 bytes"):
        load_dataset(path=str(path), rng=np.random.default_rng(0))


def test_weights_must_chain_and_be_numeric(tmp_path: Path) -> None:
    path = save_weights(tmp_path / "w.npz", {"W1": np.ones((2, 3)), "b1": np.ones(3),
                                             "W2": np.ones((4, 1)), "b2": np.ones(1)})
    with pytest.raises(SpecError, match="W2 must have as many rows as W1 has columns"):
        load_weights(path)
    path = save_weights(tmp_path / "s.npz", {"W1": np.array([["a"]]), "b1": np.ones(1)})
    with pytest.raises(SpecError, match="W1 must be a numeric array"):
        load_weights(path)


def test_a_checkpoint_of_another_network_is_refused_before_loading() -> None:
    small = build_job(resolve_config(XOR))
    payload = pack_checkpoint(small, 1)
    assert restore_checkpoint(build_job(resolve_config(XOR)), payload) == 1
    wider = build_job(resolve_config({**XOR, "model": {"hidden": [4]}}))
    with pytest.raises(SpecError, match="checkpoint: must match the trial's network"):
        restore_checkpoint(wider, payload)


SWEEP_OF_TWO = """
name: accepted
seed: 0
method: random
run_cap: 2
metric: {name: train_cost, goal: minimize}
data: {name: xor, n_samples: 16, val_fraction: 0.0}
model: {hidden: [2]}
train: {epochs: 2}
parameters:
  train.lr: {distribution: log_uniform, min: 0.01, max: 1.0}
"""


@pytest.mark.slow
def test_sweep_run_at_max_trials_100000_runs(runs_home, ray_local) -> None:
    """The cap itself is accepted by `nnchain sweep run` (on the session's Ray)."""
    from click.testing import CliRunner

    from nnchain.cli.main import main

    (runs_home / "spec.yaml").write_text(SWEEP_OF_TWO)
    result = CliRunner().invoke(main, ["sweep", "run", "spec.yaml", "--max-trials", "100000",
                                       "--quiet", "--format", "json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "FINISHED" and out["trials"] == 2
