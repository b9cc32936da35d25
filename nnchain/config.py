"""The training config: its fields, defaults, validation and dotted-key helpers.

A config is a nested dict ``{"seed", "data": {...}, "model": {...}, "train": {...}}``.
``resolve_config`` checks a user's raw mapping against ``FIELDS`` and returns the
*resolved* config: defaults filled in, ``auto`` choices made, and keys that do not
apply (momentum for adam, gamma for a constant schedule) dropped, so two cells that
train the same network resolve to the same config. The resolved config is what MLflow
records as params and what a trial key hashes.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnchain.errors import SpecError, shown
from nnchain.limits import as_float64, check_field_caps, check_int64
from nnchain.nn.activations import ACTIVATIONS
from nnchain.nn.costs import COSTS
from nnchain.nn.diagnostics import DEFAULT_KINDS, KINDS
from nnchain.nn.init import INITIALIZERS
from nnchain.nn.optim import OPTIMIZERS
from nnchain.nn.orders import UPDATE_ORDERS
from nnchain.nn.schedules import SCHEDULES
from nnchain.params import PARAM_DEFAULTS, flatten, param_value  # noqa: F401 - re-exported

SECTIONS = ("data", "model", "train")

# Datasets whose task is known without loading them: name -> classes (None: given by `classes`).
KNOWN_TASKS: dict[str, int | None] = {
    "xor": 2, "moons": 2, "circles": 2, "spirals": None, "blobs": None,
    "digits": 10, "iris": 3, "wine": 3, "breast_cancer": 2,
}
GENERATED = ("xor", "spirals", "moons", "circles", "blobs")

# The engine's registries are the one source of these names (nnchain.nn imports numpy only).
ACTIVATION_NAMES = tuple(ACTIVATIONS)
COST_NAMES = tuple(COSTS)
# An alias resolves to its canonical name, which is what a resolved config records.
INIT_ALIASES = {"he": "he_normal", "xavier_uniform": "glorot_uniform",
                "xavier_normal": "glorot_normal"}
INIT_NAMES = tuple(name for name in INITIALIZERS if name not in INIT_ALIASES)
OPTIMIZER_NAMES = tuple(OPTIMIZERS)
SCHEDULE_NAMES = tuple(SCHEDULES)
DIAGNOSTIC_NAMES = KINDS

# Which optional keys apply to which choice; the others are dropped on resolve.
OPTIMIZER_KEYS = {
    "sgd": (), "momentum": ("momentum",), "nesterov": ("momentum",),
    "rmsprop": ("rho", "eps"), "adam": ("beta1", "beta2", "eps"),
}
SCHEDULE_KEYS = {
    "constant": (), "step": ("gamma", "step_size"), "exponential": ("gamma",),
    "cosine": ("min_lr",),
}
GENERATOR_KEYS = {
    "xor": ("n_samples", "noise"), "moons": ("n_samples", "noise"),
    "circles": ("n_samples", "noise"), "spirals": ("n_samples", "noise", "classes"),
    "blobs": ("n_samples", "noise", "classes"),
}


@dataclass(frozen=True)
class Field:
    """One config key: its kind, default and the rule a value must keep."""

    kind: str  # "int" | "float" | "bool" | "str" | "choice" | "int_list" | "float_list"
    #            | "choice_list"
    default: Any
    rule: str = ""  # human text of what must hold, e.g. "> 0"
    check: Callable[[Any], bool] | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False


def _positive(x: Any) -> bool:
    return x > 0


def _non_negative(x: Any) -> bool:
    return x >= 0


def _unit_open(x: Any) -> bool:
    return 0 <= x < 1


FIELDS: dict[str, Field] = {
    "seed": Field("int", 0, ">= 0", _non_negative),
    "data.name": Field("choice", None, choices=tuple(sorted(KNOWN_TASKS)), nullable=True),
    "data.path": Field("str", None, nullable=True),
    "data.target": Field("str", None, nullable=True),
    "data.seed": Field("int", 0, ">= 0", _non_negative),
    "data.n_samples": Field("int", 500, ">= 4", lambda x: x >= 4),
    "data.noise": Field("float", 0.1, ">= 0", _non_negative),
    "data.classes": Field("int", 2, ">= 2", lambda x: x >= 2),
    "data.val_fraction": Field("float", 0.2, "in [0, 1)", _unit_open),
    "data.standardize": Field("bool", True),
    "model.hidden": Field("int_list", [16], "a list of widths >= 1", _positive),
    "model.activation": Field("choice", "tanh", choices=ACTIVATION_NAMES),
    "model.output": Field("choice", "auto", choices=("auto", *ACTIVATION_NAMES)),
    "model.cost": Field("choice", "auto", choices=("auto", *COST_NAMES)),
    "model.init": Field("choice", "auto",
                        choices=("auto", *INIT_NAMES, *INIT_ALIASES)),
    "model.dtype": Field("choice", "float64", choices=("float64", "float32")),
    "train.epochs": Field("int", 100, ">= 1", lambda x: x >= 1),
    "train.batch_size": Field("int", None, ">= 1 or null", lambda x: x >= 1, nullable=True),
    "train.optimizer": Field("choice", "sgd", choices=OPTIMIZER_NAMES),
    "train.lr": Field("float", 0.1, "> 0", _positive),
    "train.weight_decay": Field("float", 0.0, ">= 0", _non_negative),
    "train.momentum": Field("float", 0.9, "in [0, 1)", _unit_open),
    "train.beta1": Field("float", 0.9, "in [0, 1)", _unit_open),
    "train.beta2": Field("float", 0.999, "in [0, 1)", _unit_open),
    "train.rho": Field("float", 0.9, "in [0, 1)", _unit_open),
    "train.eps": Field("float", 1e-8, "> 0", _positive),
    "train.schedule": Field("choice", "constant", choices=SCHEDULE_NAMES),
    "train.gamma": Field("float", 0.5, "in (0, 1]", lambda x: 0 < x <= 1),
    "train.step_size": Field("int", 100, ">= 1", lambda x: x >= 1),
    "train.min_lr": Field("float", 0.0, ">= 0", _non_negative),
    "train.track": Field("choice_list", list(DEFAULT_KINDS), choices=DIAGNOSTIC_NAMES),
    "train.update_order": Field("choice", "simultaneous", choices=UPDATE_ORDERS),
    "train.layer_lr": Field("float_list", None, "a list of finite multipliers > 0",
                            _positive, nullable=True),
    "train.checkpoint_every": Field("int", 0, ">= 0 (0: only at the end)", _non_negative),
}


def did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str:
    """``"; did you mean 'x'?"`` when a close option exists, else ``""``."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_value(path: str, value: Any) -> Any:
    """Check one value against its field; return it normalised (ints as int, floats as float)."""
    field = FIELDS[path]
    if value is None:
        if field.nullable:
            return None
        raise SpecError(path, f"must not be null{_rule(field)}")
    kind = field.kind
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                isinstance(value, float) and not value.is_integer()):
            raise SpecError(path, f"must be an integer, got {shown(value)} "
                                  f"({_type_name(value)})")
        value = check_int64(path, int(value))
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(path, f"must be a number, got {shown(value)} "
                                  f"({_type_name(value)})")
        value = as_float64(path, value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise SpecError(path, f"must be true or false, got {shown(value)} "
                                  f"({_type_name(value)})")
    elif kind == "str":
        if not isinstance(value, str) or not value:
            raise SpecError(path, f"must be a non-empty string, got {shown(value)}")
    elif kind == "choice":
        if not isinstance(value, str) or value not in field.choices:
            hint = did_you_mean(value, field.choices) if isinstance(value, str) else ""
            raise SpecError(path, f"must be one of {', '.join(field.choices)}, "
                                  f"got {shown(value)}{hint}")
    elif kind == "choice_list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise SpecError(path, f"must be a list of {', '.join(field.choices)}, "
                                  f"got {shown(value)}")
        for item in value:
            if not isinstance(item, str) or item not in field.choices:
                hint = did_you_mean(item, field.choices) if isinstance(item, str) else ""
                raise SpecError(path, f"items must be among {', '.join(field.choices)}, "
                                      f"got {shown(item)}{hint}")
        return [name for name in field.choices if name in value]  # canonical order
    elif kind == "int_list":
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise SpecError(path, f"must be a list of integers, got {shown(value)}")
        bad = [v for v in value if not field.check(v)]
        if bad:
            raise SpecError(path, f"must be {field.rule}, got {shown(value)}")
        check_field_caps(path, value)
        return list(value)
    elif kind == "float_list":
        if not isinstance(value, list) or not value or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise SpecError(path, f"must be a non-empty list of numbers, got {shown(value)}")
        value = [as_float64(path, v) for v in value]
        if not all(math.isfinite(v) and field.check(v) for v in value):
            raise SpecError(path, f"must be {field.rule}, got {shown(value)}")
        return value
    if field.check is not None and not field.check(value):
        raise SpecError(path, f"must be {field.rule}, got {shown(value)}")
    check_field_caps(path, value)
    return value


def _rule(field: Field) -> str:
    return f" ({field.rule})" if field.rule else ""


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of ``flatten``."""
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        node = nested
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def known_path(path: str) -> str:
    """Return ``path`` if it names a config field, else raise with a suggestion."""
    if path in FIELDS:
        return path
    raise SpecError(path, f"is not a config key{did_you_mean(path, tuple(FIELDS))}")


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted key in a nested raw config (used by ``--set`` and sweep cells)."""
    known_path(path)
    node = config
    *parents, leaf = path.split(".")
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SpecError(part, f"must be a mapping, got {_type_name(child)}")
        node = child
    node[leaf] = value


def _flatten_raw(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten a user's mapping, refusing unknown keys and sections that are not mappings."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise SpecError(key, f"must be a mapping, got {_type_name(value)}")
            for sub, sub_value in value.items():
                flat[known_path(f"{key}.{sub}")] = sub_value
        elif str(key) in FIELDS:
            flat[str(key)] = value
        else:
            hint = did_you_mean(str(key), (*SECTIONS, *(p for p in FIELDS if "." not in p)))
            raise SpecError(str(key), f"is not a config section or key{hint}")
    return flat


def task_of(data: Mapping[str, Any]) -> tuple[str, int]:
    """The task ("binary" | "multiclass" | "regression") and class count of a data section.

    Named datasets are known without loading; a file is loaded (the caller caches it).
    """
    name = data.get("name")
    if name is not None:
        classes = KNOWN_TASKS[name] or data.get("classes", FIELDS["data.classes"].default)
        return ("binary" if classes == 2 else "multiclass"), classes
    import numpy as np

    from nnchain.data import load_dataset  # a file: its labels decide

    dataset = load_dataset(path=data["path"], target=data.get("target"),
                           rng=np.random.default_rng(0))
    return dataset.task, dataset.n_classes


def resolve_config(raw: Mapping[str, Any], *, task: tuple[str, int] | None = None) -> dict:
    """Validate a raw config mapping and return the resolved nested config.

    ``task`` may be given when the caller already knows it (a sweep resolving many
    cells over one data file); otherwise it comes from ``task_of``.
    Raises ``SpecError`` naming the first field that is wrong.
    """
    flat = _flatten_raw(raw)
    values = {path: check_value(path, flat[path]) if path in flat else copy.deepcopy(f.default)
              for path, f in FIELDS.items()}

    if (values["data.name"] is None) == (values["data.path"] is None):
        given = "both" if values["data.name"] else "neither"
        raise SpecError("data", f"exactly one of data.name or data.path must be given, got {given}")
    if values["data.path"] is not None:
        values["data.path"] = str(Path(values["data.path"]).expanduser().resolve())
    if values["data.path"] is not None and values["data.path"].endswith(".csv") and \
            values["data.target"] is None:
        raise SpecError("data.target", "must name the label column of a CSV file, got null")

    kind, n_classes = task if task is not None else task_of(
        {"name": values["data.name"], "path": values["data.path"],
         "target": values["data.target"], "classes": values["data.classes"]})
    _resolve_model(values, kind, n_classes)
    _check_training(values)
    return unflatten(_relevant(values))


def _check_training(values: dict[str, Any]) -> None:
    """Refuse a ``train.layer_lr`` that does not fit the network, and ``effect`` in float32."""
    layer_lr, layers = values["train.layer_lr"], len(values["model.hidden"]) + 1
    if layer_lr is not None and len(layer_lr) != layers:
        raise SpecError("train.layer_lr", f"must have one multiplier per dense layer, "
                        f"{layers} for model.hidden {values['model.hidden']}, got "
                        f"{len(layer_lr)}: {shown(layer_lr)}")
    if "effect" in values["train.track"] and values["model.dtype"] != "float64":
        raise SpecError("train.track", "effect measures cost differences that float32 "
                        "rounding swamps, so it needs model.dtype float64, got "
                        f"{values['model.dtype']}")


def _resolve_model(values: dict[str, Any], kind: str, n_classes: int) -> None:
    """Make the ``auto`` choices and refuse activation/cost pairs that cannot train."""
    cost, output = values["model.cost"], values["model.output"]
    if cost == "auto":
        cost = {"binary": "bce", "multiclass": "cross_entropy"}.get(kind, "mse")
    if output == "auto":
        output = {"bce": "sigmoid", "cross_entropy": "softmax"}.get(cost, "identity")
    if cost == "bce":
        if kind != "binary":
            raise SpecError("model.cost", f"bce needs a binary target, the data has "
                                          f"{_describe_task(kind, n_classes)}; use cross_entropy")
        if output != "sigmoid":
            raise SpecError("model.output", f"must be sigmoid when model.cost is bce, "
                                            f"got {output!r}")
    if cost == "cross_entropy":
        if kind == "regression":
            raise SpecError("model.cost", "cross_entropy needs class labels, the data has a "
                                          "regression target; use mse")
        if output != "softmax":
            raise SpecError("model.output", f"must be softmax when model.cost is cross_entropy, "
                                            f"got {output!r}")
    if output == "softmax" and kind == "regression":
        raise SpecError("model.output", "softmax needs class labels, the data has a "
                                        "regression target")
    init = values["model.init"]
    if init == "auto":
        init = "he_normal" if values["model.activation"] in ("relu", "leaky_relu") \
            else "glorot_uniform"
    values["model.cost"] = cost
    values["model.output"] = output
    values["model.init"] = INIT_ALIASES.get(init, init)


def _describe_task(kind: str, n_classes: int) -> str:
    return f"{n_classes} classes" if kind != "regression" else "a regression target"


def _relevant(values: dict[str, Any]) -> dict[str, Any]:
    """Drop the keys that do not apply to the chosen data source, optimizer and schedule."""
    drop = set()
    name = values["data.name"]
    generator_keys = ("n_samples", "noise", "classes")
    applies = GENERATOR_KEYS.get(name, ())
    drop.update(f"data.{k}" for k in generator_keys if k not in applies)
    if name is not None:
        drop.update(("data.path", "data.target"))
    else:
        drop.add("data.name")
        if values["data.target"] is None:
            drop.add("data.target")
    if name not in GENERATED and values["data.val_fraction"] == 0:
        drop.add("data.seed")  # nothing random about this data
    optimizer_keys = {k for keys in OPTIMIZER_KEYS.values() for k in keys}
    drop.update(f"train.{k}" for k in optimizer_keys
                if k not in OPTIMIZER_KEYS[values["train.optimizer"]])
    schedule_keys = {k for keys in SCHEDULE_KEYS.values() for k in keys}
    drop.update(f"train.{k}" for k in schedule_keys
                if k not in SCHEDULE_KEYS[values["train.schedule"]])
    # at their defaults these leave the resolved config (and so trial keys) as before them
    if values["train.update_order"] == "simultaneous":
        drop.add("train.update_order")
    if values["train.layer_lr"] is None:
        drop.add("train.layer_lr")
    return {path: value for path, value in values.items() if path not in drop}


def parse_override(item: str) -> tuple[str, Any]:
    """``"train.lr=0.3"`` -> ``("train.lr", 0.3)``: the one reader of ``--set KEY=VALUE``
    (training and sweep specs alike), the value read as YAML."""
    from nnchain.yamlio import parse_value

    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise SpecError("--set", f"must look like key=value (train.lr=0.3), got {item!r}")
    return key.strip(), parse_value(text)


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``key=value`` overrides (values read as YAML) to a raw config, in order."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        set_path(raw, *parse_override(item))
    return raw


def to_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The resolved config as MLflow params: dotted keys, string values."""
    return {**PARAM_DEFAULTS,
            **{path: param_value(value) for path, value in flatten(config).items()}}
