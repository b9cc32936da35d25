"""Trial keys and spec fingerprints."""

from __future__ import annotations

import dataclasses

from nnchain.sweep import expand, parse_sweep_spec, spec_fingerprint, trial_key


def test_trial_key_stable_across_dict_order():
    one = {"seed": 0, "train": {"lr": 0.1, "epochs": 5}, "model": {"hidden": [4, 4]}}
    two = {"model": {"hidden": [4, 4]}, "train": {"epochs": 5, "lr": 0.1}, "seed": 0}
    assert trial_key(one) == trial_key(two)
    assert len(trial_key(one)) == 16 and int(trial_key(one), 16) >= 0


def test_trial_key_differs_for_different_configs():
    base = {"seed": 0, "train": {"lr": 0.1}}
    assert trial_key(base) != trial_key({"seed": 0, "train": {"lr": 0.2}})
    assert trial_key(base) != trial_key({"seed": 1, "train": {"lr": 0.1}})
    assert trial_key({"model": {"hidden": [4, 8]}}) != trial_key({"model": {"hidden": [8, 4]}})


def make_spec(values, **top):
    return parse_sweep_spec({"name": "s", "data": {"name": "xor"},
                             "parameters": {"train.lr": {"values": values}}, **top}, text="# x")


def fingerprint(spec):
    return spec_fingerprint(spec, [trial.key for trial in expand(spec)])


def test_fingerprint_changes_when_a_value_list_changes():
    assert fingerprint(make_spec([0.1, 0.2])) == fingerprint(make_spec([0.1, 0.2]))
    assert fingerprint(make_spec([0.1, 0.2])) != fingerprint(make_spec([0.1, 0.3]))
    assert fingerprint(make_spec([0.1, 0.2])) != fingerprint(make_spec([0.1, 0.2, 0.3]))


def test_fingerprint_ignores_order_name_and_runner_options():
    spec = make_spec([0.1, 0.2])
    assert fingerprint(spec) == fingerprint(make_spec([0.2, 0.1]))
    renamed = dataclasses.replace(spec, name="other", text="# other", max_retries=5,
                                  trial_timeout=30.0)
    assert fingerprint(spec) == fingerprint(renamed)


def test_fingerprint_changes_with_metric_and_options():
    spec = make_spec([0.1, 0.2])
    assert fingerprint(spec) != fingerprint(make_spec([0.1, 0.2], metric={"goal": "maximize"}))
    assert fingerprint(spec) != fingerprint(make_spec([0.1, 0.2], metric={"name": "train_cost"}))
    assert fingerprint(spec) != fingerprint(make_spec([0.1, 0.2], method="random"))
    assert fingerprint(spec) != fingerprint(make_spec([0.1, 0.2], repeats=2))


def test_fingerprint_covers_early_stopping_and_a_bayes_space():
    spec = make_spec([0.1, 0.2])
    hyperband = make_spec([0.1, 0.2], early_terminate={"type": "hyperband", "min_iter": 2})
    assert fingerprint(spec) != fingerprint(hyperband)
    assert fingerprint(hyperband) != fingerprint(
        make_spec([0.1, 0.2], early_terminate={"type": "hyperband", "min_iter": 3}))

    def bayes(low, epochs=10):
        return parse_sweep_spec({"name": "b", "method": "bayes", "run_cap": 8,
                                 "data": {"name": "xor"}, "train": {"epochs": epochs},
                                 "parameters": {"train.lr": {"distribution": "log_uniform",
                                                             "min": low, "max": 1.0}}},
                                text="# b")

    assert fingerprint(bayes(1e-3)) == fingerprint(bayes(1e-3))
    assert fingerprint(bayes(1e-3)) != fingerprint(bayes(1e-4))  # the space
    assert fingerprint(bayes(1e-3)) != fingerprint(bayes(1e-3, epochs=20))  # the base
