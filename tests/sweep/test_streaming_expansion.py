"""The streaming expansion (``iter_trials``, ``survey``) against the list expansion it
replaced: the same trials (index, key, repeat, overrides, config, in order) and the same
spec fingerprint, for grid and random specs under several seeds, and a memory that does
not grow with the sweep's configs.

The reference figures were recorded from ``expand`` before it streamed (commit a168389):
a change to them changes every recorded sweep's trial keys or fingerprints (a resume of a
sweep made before would be refused), so they must not be re-recorded to make a test pass.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tracemalloc

import pytest

from nnchain.errors import SpecError
from nnchain.sweep import expand, iter_trials, parse_sweep_spec, spec_fingerprint, survey

BASE = {"data": {"name": "xor", "n_samples": 64, "val_fraction": 0.25},
        "model": {"hidden": [4]}, "train": {"epochs": 5, "lr": 0.5}}
GRID = {"train.lr": {"values": [0.1, 0.5, 1.0]}, "model.hidden": {"values": [[2], [4], [8]]},
        "model.activation": {"value": "relu"}}
GRID_DUPLICATES = {"train.optimizer": {"values": ["adam", "momentum"]},  # momentum dropped
                   "train.momentum": {"values": [0.5, 0.9]}}             # for adam
FINITE = {"train.lr": {"values": [0.05, 0.1, 0.2, 0.4, 0.8]},  # sampled by a permutation
          "train.epochs": {"distribution": "int_uniform", "min": 1, "max": 4}}
CONTINUOUS = {"train.lr": {"distribution": "log_uniform", "min": 1e-3, "max": 1.0},
              "model.activation": {"values": ["tanh", "relu"]}}
QUANTISED = {"train.lr": {"distribution": "q_uniform", "min": 0.1, "max": 1.0, "q": 0.1},
             "train.optimizer": {"values": ["adam", "momentum"]},
             "train.momentum": {"distribution": "uniform", "min": 0.1, "max": 0.9}}
SCALE = {"train.lr": {"distribution": "log_uniform", "min": 0.001, "max": 1.0},
         "seed": {"distribution": "int_uniform", "min": 0, "max": 1000000}}
GRID_600 = {"train.lr": {"values": [0.01 * i for i in range(1, 31)]},
            "model.hidden": {"values": [[width] for width in range(2, 12)]}}

CASES = {  # name -> (parameters, top-level keys)
    "grid": (GRID, {}),
    "grid seed 7 repeats 3": (GRID, {"seed": 7, "repeats": 3}),
    "grid duplicates repeats 2": (GRID_DUPLICATES, {"seed": 1, "repeats": 2}),
    **{f"finite seed {seed}": (FINITE, {"method": "random", "run_cap": 7, "seed": seed})
       for seed in (0, 1, 2)},
    "finite seed 5 repeats 2": (FINITE, {"method": "random", "run_cap": 7, "seed": 5,
                                         "repeats": 2}),
    **{f"continuous seed {seed}": (CONTINUOUS, {"method": "random", "run_cap": 20,
                                                "seed": seed}) for seed in (0, 3, 11)},
    "continuous seed 4 repeats 3": (CONTINUOUS, {"method": "random", "run_cap": 10, "seed": 4,
                                                 "repeats": 3}),
    "quantised with duplicates": (QUANTISED, {"method": "random", "run_cap": 15, "seed": 2}),
    "scale 2000": (SCALE, {"method": "random", "run_cap": 2000, "seed": 0,
                           "metric": {"name": "train_cost", "goal": "minimize"}}),
    "grid 600 seed 3 repeats 2": (GRID_600, {"seed": 3, "repeats": 2}),
}

# name -> (trials, digest of every trial, first key, last key, spec fingerprint), recorded
# from the list expansion before streaming.
RECORDED = {
    "grid": (9, "6c7126e2cbdfb53d4c980408", "b4c39ebc805594f9", "b0e1c5380391f814", "3d340f4e3d4425b88b850f3eb85d0fc3aecfd74b51d0d5b0fd1a32f5248ab656"),  # noqa: E501
    "grid seed 7 repeats 3": (27, "c2ca07fd51276e58703852c1", "64ab3aed885ce284", "d2168ec068519dc1", "d24dfdaeb18b1c4698d2ab0244b48aa5802eed99dbc479a8cf5095e14cdcf426"),  # noqa: E501
    "grid duplicates repeats 2": (6, "281a085f84c0d0b59c9bdb56", "03e0422c26620290", "65079a5bbca5afbf", "a599e2319224dd09a2e29e9020b9e37f1c3b7ddaf8c6c5484d47b92de8000f52"),  # noqa: E501
    "finite seed 0": (7, "d6be4a1a7d0bb559b6f12bf1", "b3f417bc783622af", "b60839ff1715809d", "68bec241fc1d215cdd2c8e40ded55abb1abf048107577796b017d6d43bcdc0b7"),  # noqa: E501
    "finite seed 1": (7, "0ad135458fb94cbe04813cc3", "09a6ce50c9192cae", "adb8e37598b7d752", "83bff5dd89dd4001ce04ecfea5751aadb0f6fe08104ed96643a400f7abdd0498"),  # noqa: E501
    "finite seed 2": (7, "6aaedfd3cf76a526c3571240", "e92ee4edef277a06", "20f0087e26fa6707", "15447b05e3768649f0bc320f2df13cd433aa67f2ab7bbcbb177f6c16f2bbf91e"),  # noqa: E501
    "finite seed 5 repeats 2": (14, "9c286654d251ff6b9f2c497d", "9a43f252b6231b04", "1648d726139b62e3", "269bc8e429091929bce54802ba26c017aa0e24a4a828b3040592bde6d065c1f0"),  # noqa: E501
    "continuous seed 0": (20, "1a092c61f56dc925ce1cfc95", "2b866bc8cc2d0f6a", "3390b4b461838b1b", "52ef4ffd4000c741b424aa3fe06ae51f36c5a9d623b464bd130f71b3285de248"),  # noqa: E501
    "continuous seed 3": (20, "4b2cab9e62e5347c76a009f8", "d2c86433f335b704", "52d1a36aa686ddc6", "9c7bb7a369cf056be9f3b80238e1a40f16bcce39c639f8d6ca94657a2774829f"),  # noqa: E501
    "continuous seed 11": (20, "31be6f64520dffa0f3f067a9", "83e47b05c1f85796", "d82907162f98c7c8", "e9f59b7a8fd73d0154a7179b61d975bb443d6b3cafbfe1f614eb7e8f4ce3b363"),  # noqa: E501
    "continuous seed 4 repeats 3": (30, "729bfb0c21cbac2f5ad97ad8", "837cb671ef9013e1", "4ac046e0826cc6ab", "e6d6d6845612d0bcab53c72be8c0173fbf75a51424dff5a7412db373e1e4388c"),  # noqa: E501
    "quantised with duplicates": (15, "e2c4d637a2ddda6ee90af354", "7b0b3724fc7f843f", "3bf9b711b8f23fbf", "35e48a01ad2492c15d6dfce1df1f45ac4c190a8410481b5e71a6f6b598973a59"),  # noqa: E501
    "scale 2000": (2000, "6e76798d2943ebfd32d909cc", "916a1ccb1b978335", "ebdc65a3daa705f9", "da196a9fab49fe62c0cfbde22df51b6d309ad8017f8c87e132ba57fbb6a59ec6"),  # noqa: E501
    "grid 600 seed 3 repeats 2": (600, "7d0de8d6918db63198698f51", "02cc7857e0b07141", "c60eb08ea60f51f1", "da8590fce8242bededbc95228a1284ba6afbdd107e52742b4c8f5e28c548bfdc"),  # noqa: E501
}


def case_spec(name: str):
    parameters, top = CASES[name]
    return parse_sweep_spec({"name": "ref", **BASE, "parameters": parameters, **top},
                            text="# ref")


def digest(trials) -> str:
    rows = [[t.index, t.key, t.repeat, t.overrides, t.config] for t in trials]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:24]


@pytest.mark.parametrize("name", list(CASES))
def test_the_stream_gives_the_recorded_trials_and_fingerprint(name: str):
    spec = case_spec(name)
    count, recorded, first, last, fingerprint = RECORDED[name]
    trials = list(iter_trials(spec))
    assert (len(trials), digest(trials), trials[0].key, trials[-1].key) == \
        (count, recorded, first, last)
    assert [t.index for t in trials] == list(range(count))
    assert expand(spec) == trials
    found = survey(spec)
    assert (found.count, found.first) == (count, trials[0].config)
    assert spec_fingerprint(spec, [t.key for t in trials]) == fingerprint
    assert found.fingerprint == fingerprint  # a sweep recorded before resumes


def test_the_cases_cover_duplicates_and_both_random_paths():
    """The recorded cases are not all trivial: cells collapse, repeats multiply."""
    duplicates = case_spec("grid duplicates repeats 2")
    assert len(list(iter_trials(duplicates))) == 6 < 4 * duplicates.repeats
    quantised = case_spec("quantised with duplicates")
    overrides = [t.overrides for t in iter_trials(quantised)]
    assert any(o["train.optimizer"] == "adam" for o in overrides)  # momentum dropped there
    assert len({t.key for t in iter_trials(case_spec("finite seed 5 repeats 2"))}) == 14


def test_a_survey_keeps_data_sections_and_files_not_configs(tmp_path, monkeypatch):
    spec = parse_sweep_spec({"name": "d", **BASE, "parameters": {
        "data.seed": {"values": [1, 2]}, "train.lr": {"values": [0.1, 0.2, 0.3]}}})
    found = survey(spec)
    assert found.count == 6
    assert [section["seed"] for section in found.data] == [1, 2]  # first use first
    assert found.data_paths == set()
    (tmp_path / "a.csv").write_text("x,label\n0,0\n1,1\n0,0\n1,1\n")
    (tmp_path / "b.csv").write_text("x,label\n1,0\n0,1\n1,0\n0,1\n")
    files = parse_sweep_spec({"name": "f", "data": {"path": "a.csv", "target": "label"},
                              "parameters": {"data.path": {"values": ["a.csv", "b.csv"]}}})
    base_only = parse_sweep_spec({"name": "f", "data": {"path": "a.csv", "target": "label"},
                                  "parameters": {"train.lr": {"values": [0.1, 0.2]}}})
    monkeypatch.chdir(tmp_path)
    assert survey(files).data_paths == {"a.csv", "b.csv"}  # as the spec writes them
    assert survey(base_only).data_paths == {"a.csv"}


def test_sizes_are_refused_before_the_first_trial_cells_when_reached():
    spec = case_spec("grid seed 7 repeats 3")
    with pytest.raises(SpecError, match="27 trials"):
        iter_trials(spec, max_trials=26)  # at once, not at the first next()
    bad = parse_sweep_spec({"name": "b", **BASE, "parameters": {
        "train.lr": {"values": [0.1, 0.2, -1.0]}}})
    stream = iter_trials(bad)
    assert [t.config["train"]["lr"] for t in (next(stream), next(stream))] == [0.1, 0.2]
    with pytest.raises(SpecError, match=r"cell train.lr=-1.0\): train.lr: must be > 0"):
        next(stream)
    with pytest.raises(SpecError, match=r"cell train.lr=-1.0\)"):
        survey(bad)  # the check a run makes before its first write


def test_a_random_search_short_of_cells_fails_its_survey():
    spec = parse_sweep_spec({"name": "q", **BASE, "method": "random", "run_cap": 5,
                             "parameters": {"train.lr": {"distribution": "q_uniform",
                                                         "min": 0.1, "max": 0.2, "q": 0.1}}})
    with pytest.raises(SpecError, match="found only 2 distinct cells") as info:
        survey(spec)
    assert info.value.field == "run_cap"


def test_a_bayes_survey_is_its_template():
    spec = parse_sweep_spec({"name": "b", **BASE, "method": "bayes", "run_cap": 8,
                             "parameters": {"train.lr": {"distribution": "log_uniform",
                                                         "min": 1e-3, "max": 1.0}}})
    found = survey(spec)
    assert list(iter_trials(spec)) == [] and found.count == 8
    assert found.fingerprint == spec_fingerprint(spec, [])
    assert found.first["train"]["epochs"] == 5 and found.data == [found.first["data"]]


def random_spec(trials: int):
    return parse_sweep_spec({"name": "m", **BASE, "method": "random", "run_cap": trials,
                             "seed": 1, "parameters": SCALE})


def traced_peak(call) -> int:
    """Bytes allocated at the peak while ``call`` runs (tracemalloc)."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_stream_holds_keys_not_configs():
    """At 2,000 trials the list holds every config; the stream and the survey about its
    keys (a fifth is a wide margin: about a twentieth was measured)."""
    spec = random_spec(2_000)
    listed = traced_peak(lambda: expand(spec))
    streamed = traced_peak(lambda: sum(1 for _ in iter_trials(spec)))
    surveyed = traced_peak(lambda: survey(spec))
    assert streamed < listed / 5 and surveyed < listed / 5, (listed, streamed, surveyed)


SURVEY_100K = """
import json
from nnchain.sweep import parse_sweep_spec, survey

def high_water_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024

spec = parse_sweep_spec(json.loads(SPEC))
before = high_water_mb()
found = survey(spec, max_trials=100_000)
print(json.dumps({"count": found.count,
                  "grown_mb": high_water_mb() - before}))
"""


@pytest.mark.slow
def test_100000_random_trials_stream_in_little_memory():
    """A survey of 100,000 trials (the trials cap) in a child process: its peak RSS grows
    by about 20 MB (the trial keys, while it runs), where the list expansion grew it by
    about 330 MB."""
    spec = {"name": "m", **BASE, "method": "random", "run_cap": 100_000, "seed": 1,
            "parameters": SCALE}
    code = SURVEY_100K.replace("json.loads(SPEC)", f"json.loads({json.dumps(spec)!r})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600, check=True)
    measured = json.loads(result.stdout)
    assert measured["count"] == 100_000
    assert measured["grown_mb"] < 80, measured


MADE_BEFORE = """name: made-before
seed: 4
method: random
run_cap: 12
repeats: 2
metric: {name: train_cost, goal: minimize}
data: {name: xor, n_samples: 16, val_fraction: 0.0}
model: {hidden: [3]}
train: {epochs: 3}
parameters:
  train.lr: {distribution: log_uniform, min: 0.01, max: 1.0}
  model.activation: {values: [tanh, relu]}
"""
MADE_BEFORE_OVERRIDES = ("train.epochs=4",)
# what `sweep run` recorded for it (24 trials) before the expansion streamed
MADE_BEFORE_FINGERPRINT = "66edb6a50515a53a937312927a653a7ec977914bf31ebd04eac6418e481475fa"


class ReachedRay(Exception):
    """resume_sweep got past its checks to starting Ray."""


def test_a_sweep_recorded_before_streaming_resumes_and_a_changed_one_is_refused(
        tmp_path, monkeypatch):
    """resume_sweep surveys the stored spec and compares fingerprints before Ray starts:
    the fingerprint recorded by the list expansion matches; a changed spec does not."""
    from nnchain.ledger import sweeps as ledger_ops
    from nnchain.ledger.store import open_ledger
    from nnchain.runner import cluster
    from nnchain.runner.sweep import SweepOptions, resume_sweep
    from nnchain.sweep import apply_spec_overrides
    from nnchain.yamlio import parse_yaml

    def connect(*args, **kwargs):
        raise ReachedRay

    monkeypatch.setattr(cluster, "connect", connect)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    uri, ledger_url = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'l.db'}"
    ledger = open_ledger(ledger_url)
    for sweep_id, text in (("a" * 12, MADE_BEFORE),
                           ("b" * 12, MADE_BEFORE.replace("seed: 4", "seed: 5"))):
        data = apply_spec_overrides(parse_yaml(text, "spec"), MADE_BEFORE_OVERRIDES)
        spec = parse_sweep_spec(data, text, overrides=MADE_BEFORE_OVERRIDES)
        ledger_ops.create_sweep(
            ledger, sweep_id=sweep_id, name=f"s-{sweep_id[0]}", experiment="e",
            spec_text=text, fingerprint=MADE_BEFORE_FINGERPRINT, metric_name="train_cost",
            metric_goal="minimize", options={"overrides": list(MADE_BEFORE_OVERRIDES)},
            tracking_uri=uri, trials=iter_trials(spec))
    options = SweepOptions(tracking_uri=uri, ledger_url=ledger_url)
    assert ledger_ops.find_sweep(ledger, "s-a").trial_count == 24
    with pytest.raises(ReachedRay):
        resume_sweep("s-a", options)
    with pytest.raises(SpecError, match="the spec of sweep 's-b' must not change"):
        resume_sweep("s-b", options)
    ledger.dispose()
