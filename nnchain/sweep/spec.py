"""The sweep spec: a YAML file naming a base config, a search space and how to judge it.

```yaml
name: xor-grid                 # required, see nnchain.names
method: grid                   # grid | random
metric: {name: val_cost, goal: minimize}
data: {name: xor}              # the base config, as in a `nnchain train` spec
parameters:
  train.lr: {values: [0.1, 0.5]}
```

A sweep spec is told from a training spec (``nnchain train``) by its keys: one that has
any key a training config does not (``SWEEP_KEYS``: ``name``, ``parameters``, ``method``,
``metric``, ...) is a sweep spec; one with only ``seed``, ``data``, ``model``, ``train`` is
a training spec. ``spec_kind`` says which, so each command can point at the other.

``parse_sweep_spec`` checks everything that can be checked without expanding cells:
top-level keys, names, search options, each parameter's space, and each base value
that no parameter replaces. ``expand`` then resolves every cell. The top-level ``seed``
is both the sweep seed (random sampling, repeat seeds) and the base config's ``seed``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnchain.config import (
    FIELDS,
    SECTIONS,
    check_value,
    did_you_mean,
    known_path,
    parse_override,
)
from nnchain.errors import SpecError, shown
from nnchain.limits import as_float64, check_int64
from nnchain.names import NAME_RULE, check_name
from nnchain.sweep.pruning import TYPES as EARLY_TERMINATE_TYPES
from nnchain.sweep.pruning import EarlyTerminate
from nnchain.sweep.space import Distribution, Space, is_finite, parse_parameter
from nnchain.yamlio import load_yaml_mapping

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
METRICS = ("train_cost", "val_cost", "train_accuracy", "val_accuracy")
SWEEP_KEYS = ("name", "experiment", "method", "metric", "run_cap", "repeats", "max_retries",
              "trial_timeout", "early_terminate", "parameters")  # keys a training spec has not
TOP_LEVEL_KEYS = (*SWEEP_KEYS, "seed", *SECTIONS)
DEFAULT_MAX_RETRIES = 2
EPOCH_METRICS = METRICS  # the metrics every epoch logs (early stopping judges them)
EARLY_TERMINATE_KEYS = ("type", "min_iter", "eta")


@dataclass(frozen=True)
class Metric:
    """The metric a sweep optimises, read from each trial's last epoch."""

    name: str
    goal: str  # "minimize" | "maximize"


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec; ``expand`` turns it into trials."""

    name: str
    experiment: str
    seed: int
    method: str
    metric: Metric
    run_cap: int | None
    repeats: int
    max_retries: int
    trial_timeout: float | None
    base: dict  # the raw base config: seed, data, model, train
    parameters: dict  # dotted config key -> Values | Value | Distribution
    text: str  # the original YAML text, recorded as an artifact
    overrides: tuple[str, ...] = field(default=())  # the key=value overrides applied to it
    early_terminate: EarlyTerminate | None = None


def load_sweep_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read a sweep spec file, apply ``key=value`` overrides, and validate it.

    An override names a top-level key (``run_cap=5``, ``repeats=2``), a metric key
    (``metric.goal=maximize``), a base config key (``train.epochs=10``) or a whole
    parameter (``parameters.train.lr={values: [0.1]}``); values are read as YAML.
    """
    data = load_yaml_mapping(path)
    if spec_kind(data) == "training":
        raise SpecError(str(path), "is a training spec (no `name` or `parameters`); run it "
                                   f"with `nnchain train {path}`, or add `name` and "
                                   "`parameters` for a sweep")
    text = Path(path).read_text(encoding="utf-8")
    return parse_sweep_spec(apply_spec_overrides(data, overrides), text,
                            overrides=tuple(overrides))


def spec_kind(data: Mapping[str, Any]) -> str:
    """``"sweep"`` when the raw mapping has any of ``SWEEP_KEYS``, else ``"training"``."""
    return "sweep" if any(key in data for key in SWEEP_KEYS) else "training"


def apply_spec_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict:
    """Return a copy of the raw spec mapping with ``key=value`` overrides applied in order
    (each read by ``config.parse_override``, then routed to its part of the spec)."""
    data = copy.deepcopy(dict(data))
    for item in overrides:
        key, value = parse_override(item)
        if key.startswith("parameters."):
            path = key.removeprefix("parameters.")
            _parameter_path(path)
            _child(data, "parameters")[path] = value
        elif key.startswith("metric."):
            sub = key.removeprefix("metric.")
            if sub not in ("name", "goal"):
                hint = did_you_mean(key, ("metric.name", "metric.goal"))
                raise SpecError(key, f"is not a metric key, expected metric.name or "
                                     f"metric.goal{hint}")
            _child(data, "metric")[sub] = value
        elif key.startswith("early_terminate."):
            sub = key.removeprefix("early_terminate.")
            if sub not in EARLY_TERMINATE_KEYS:
                options = [f"early_terminate.{k}" for k in EARLY_TERMINATE_KEYS]
                raise SpecError(key, f"is not an early_terminate key, expected "
                                     f"{', '.join(options)}{did_you_mean(key, options)}")
            _child(data, "early_terminate")[sub] = value
        elif key in TOP_LEVEL_KEYS and key not in SECTIONS:
            data[key] = value
        elif key in FIELDS:
            parameters = data.get("parameters")
            if isinstance(parameters, Mapping) and key in parameters:
                raise SpecError(key, f"is swept by parameters.{key}, so a base value would be "
                                     f"ignored; override parameters.{key}={{value: ...}} instead")
            section, _, leaf = key.partition(".")
            _child(data, section)[leaf] = value
        else:
            options = (*TOP_LEVEL_KEYS, "metric.name", "metric.goal", *FIELDS)
            raise SpecError(key, f"is not a sweep spec or config key{did_you_mean(key, options)}")
    return data


def _child(data: dict, key: str) -> dict:
    child = data.get(key)
    if child is None:
        child = data[key] = {}
    if not isinstance(child, dict):
        raise SpecError(key, f"must be a mapping, got {type(child).__name__}")
    return child


def parse_sweep_spec(data: Mapping[str, Any], text: str = "",
                     overrides: tuple[str, ...] = ()) -> SweepSpec:
    """Validate a raw spec mapping; raise ``SpecError`` on the first thing wrong."""
    if not isinstance(data, Mapping):
        raise SpecError("spec", f"must be a mapping, got {type(data).__name__}")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise SpecError(str(key), f"is not a sweep spec key"
                                      f"{did_you_mean(str(key), TOP_LEVEL_KEYS)}")
    if "name" not in data:
        raise SpecError("name", f"is required: the sweep's name, {NAME_RULE}")
    name = check_name("name", data["name"])
    experiment = check_name("experiment", data.get("experiment", name))
    seed = check_value("seed", data.get("seed", FIELDS["seed"].default))
    method = _choice("method", data.get("method", "grid"), METHODS)
    metric = _metric(data.get("metric"))
    repeats = _integer("repeats", data.get("repeats", 1), 1)
    max_retries = _integer("max_retries", data.get("max_retries", DEFAULT_MAX_RETRIES), 0)
    trial_timeout = _timeout(data.get("trial_timeout"))
    parameters = _parameters(data.get("parameters"))
    base = _base(data, seed, parameters)
    if repeats > 1 and "seed" in parameters:
        raise SpecError("repeats", f"repeats > 1 derives each repeat's seed, so it cannot be "
                                   f"combined with a seed parameter, got repeats={repeats} "
                                   f"and parameters.seed")
    run_cap = _run_cap(method, data.get("run_cap"), parameters)
    if method == "bayes":
        _check_bayes(repeats, parameters)
    early_terminate = _early_terminate(data.get("early_terminate"), metric, base, parameters)
    return SweepSpec(name=name, experiment=experiment, seed=seed, method=method, metric=metric,
                     run_cap=run_cap, repeats=repeats, max_retries=max_retries,
                     trial_timeout=trial_timeout, base=base, parameters=parameters, text=text,
                     overrides=tuple(overrides), early_terminate=early_terminate)


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        raise SpecError(key, f"must be one of {', '.join(choices)}, got {shown(value)}{hint}")
    return value


def _integer(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not value.is_integer()):
        raise SpecError(key, f"must be an integer >= {minimum}, got {shown(value)}")
    if value < minimum:
        raise SpecError(key, f"must be >= {minimum}, got {int(value)}")
    return check_int64(key, int(value))


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise SpecError("trial_timeout", f"must be a number of seconds > 0 or null, "
                                         f"got {shown(value)}")
    return as_float64("trial_timeout", value)


def _metric(raw: Any) -> Metric:
    if raw is None:
        return Metric("val_cost", "minimize")
    if not isinstance(raw, Mapping):
        raise SpecError("metric", f"must be a mapping like {{name: val_cost, goal: minimize}}, "
                                  f"got {shown(raw)}")
    for key in raw:
        if key not in ("name", "goal"):
            raise SpecError(f"metric.{key}", f"is not a metric key, expected name or goal"
                                             f"{did_you_mean(str(key), ('name', 'goal'))}")
    name = _choice("metric.name", raw.get("name", "val_cost"), METRICS)
    default_goal = "maximize" if name.endswith("accuracy") else "minimize"
    return Metric(name, _choice("metric.goal", raw.get("goal", default_goal), GOALS))


def _early_terminate(raw: Any, metric: Metric, base: Mapping[str, Any],
                     parameters: Mapping[str, Space]) -> EarlyTerminate | None:
    """``{type: hyperband|asha|median, min_iter, eta}``, judged on the sweep's metric."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError("early_terminate", f"must be a mapping like {{type: hyperband, "
                                           f"min_iter: 5, eta: 3}}, got {shown(raw)}")
    for key in raw:
        if key not in EARLY_TERMINATE_KEYS:
            hint = did_you_mean(str(key), EARLY_TERMINATE_KEYS)
            raise SpecError(f"early_terminate.{key}", f"is not an early_terminate key, "
                                                      f"expected type, min_iter or eta{hint}")
    if "type" not in raw:
        raise SpecError("early_terminate.type", f"is required, one of "
                                                f"{', '.join(EARLY_TERMINATE_TYPES)}")
    kind = _choice("early_terminate.type", raw["type"], EARLY_TERMINATE_TYPES)
    min_iter = _integer("early_terminate.min_iter", raw.get("min_iter", 1), 1)
    eta = _integer("early_terminate.eta", raw.get("eta", 3), 2)
    if metric.name not in EPOCH_METRICS:
        raise SpecError("early_terminate", f"needs a metric logged every epoch "
                                           f"({', '.join(EPOCH_METRICS)}), got metric.name="
                                           f"{metric.name}")
    if "train.epochs" in parameters:
        raise SpecError("early_terminate", "needs one train.epochs for every trial, got "
                                           "parameters.train.epochs")
    epochs = base.get("train", {}).get("epochs", FIELDS["train.epochs"].default)
    if min_iter >= epochs:
        raise SpecError("early_terminate.min_iter", f"must be < train.epochs ({epochs}), got "
                                                    f"{min_iter}")
    return EarlyTerminate(kind, min_iter, eta)


def _parameter_path(path: str) -> str:
    try:
        return known_path(path)
    except SpecError as exc:
        raise SpecError(f"parameters.{path}", exc.message) from None


def _parameters(raw: Any) -> dict[str, Space]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError("parameters", f"must be a mapping of config key -> space, "
                                      f"got {type(raw).__name__}")
    return {_parameter_path(str(path)): parse_parameter(str(path), space)
            for path, space in raw.items()}


def _base(data: Mapping[str, Any], seed: int, parameters: Mapping[str, Space]) -> dict:
    """The raw base config; its keys must be config keys, its values valid unless swept."""
    base: dict[str, Any] = {"seed": seed}
    for section in SECTIONS:
        raw = data.get(section)
        if raw is None:
            continue
        if not isinstance(raw, Mapping):
            raise SpecError(section, f"must be a mapping, got {type(raw).__name__}")
        for key, value in raw.items():
            path = known_path(f"{section}.{key}")
            if path not in parameters:
                check_value(path, value)
        base[section] = copy.deepcopy(dict(raw))
    return base


def _check_bayes(repeats: int, parameters: Mapping[str, Space]) -> None:
    """What TPE proposals cannot take: repeats, a swept dataset (every proposal trains on
    one), a distribution without width."""
    if repeats > 1:
        raise SpecError("repeats", f"applies to method grid or random; bayes proposes each "
                                   f"trial once, got repeats={repeats}")
    for path, space in parameters.items():
        if path.startswith("data."):
            raise SpecError(f"parameters.{path}", "method: bayes trains every proposal on "
                                                  "one dataset; set data keys in data:")
        if isinstance(space, Distribution) and not space.min < space.max:
            raise SpecError(f"parameters.{path}", f"method: bayes needs min < max, got "
                                                  f"min={space.min}, max={space.max}; use "
                                                  f"value: for a fixed value")


def _run_cap(method: str, raw: Any, parameters: Mapping[str, Space]) -> int | None:
    """``None`` for a grid; for random search the number of cells to sample; for bayes
    the number of trials to propose (required).

    Over a finite space (values, value, int_uniform) sampling is without replacement,
    so ``run_cap`` defaults to the space size and is capped by it.
    """
    if method == "grid":
        distributions = [p for p, s in parameters.items() if isinstance(s, Distribution)]
        if distributions:
            raise SpecError(f"parameters.{distributions[0]}",
                            "a distribution needs method: random; a grid takes values: [...]")
        if raw is not None:
            raise SpecError("run_cap", f"applies to method: random only (a grid runs every "
                                       f"cell), got run_cap={shown(raw)}")
        return None
    run_cap = None if raw is None else _integer("run_cap", raw, 1)
    if method == "bayes":
        if run_cap is None:
            raise SpecError("run_cap", "is required for method: bayes (the number of trials "
                                       "to propose)")
        return run_cap
    continuous = [p for p, s in parameters.items() if not is_finite(s)]
    if continuous:
        if run_cap is None:
            raise SpecError("run_cap", f"is required for a random search over a continuous "
                                       f"distribution (parameters.{continuous[0]})")
        return run_cap
    size = space_size(parameters)
    return size if run_cap is None else min(run_cap, size)


def space_size(parameters: Mapping[str, Space]) -> int:
    """The number of cells of a finite space: the product of each parameter's size."""
    return math.prod(space.size for space in parameters.values())
