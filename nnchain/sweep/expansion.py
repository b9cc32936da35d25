"""Expand a sweep spec into trials: every cell resolved and checked before anything runs.

Order: a grid walks ``itertools.product`` over the parameters in spec order (the last
one varies fastest); random search keeps its draws in the order drawn. Repeats are
the outer loop, as Ray Tune's ``num_samples`` repeats a grid: repeat 0 of every cell,
then repeat 1, so the first pass already covers the whole space.

Seeds: with ``repeats == 1`` each cell trains with the spec's ``seed`` (a cell reruns
as ``nnchain train --set seed=<seed>``); with ``repeats > 1`` repeat ``r`` trains with
a seed derived from the sweep seed and ``r`` by ``numpy.random.SeedSequence``, which
does not depend on ``repeats``, so raising ``repeats`` keeps the earlier repeats' keys.

Memory: ``iter_trials`` makes the trials one at a time and keeps only trial keys (to drop
duplicates); each repeat walks the cells again rather than keeping them. A run checks
every cell in one pass (``survey``) and writes from a second (invariant 6).
"""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnchain.config import param_value, resolve_config, set_path, task_of
from nnchain.errors import SpecError
from nnchain.limits import DEFAULT_MAX_TRIALS
from nnchain.sweep.keys import canonical_json, spec_fingerprint, trial_key
from nnchain.sweep.space import Distribution, Space, Value, Values, is_finite
from nnchain.sweep.spec import SweepSpec, space_size

SAMPLE_STREAM, REPEAT_STREAM = 0, 1  # SeedSequence spawn keys: independent streams
PERMUTE_LIMIT = 1_000_000  # a finite space up to this size is sampled by a permutation
DRAWS_PER_CELL = 100  # random search gives up after this many draws per wanted cell


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: a resolved config and the overrides that made it."""

    index: int  # 0-based, expansion order
    key: str  # trial_key(config)
    config: dict  # the resolved config (nested)
    overrides: dict  # dotted path -> value chosen for this cell, and "seed" for repeats
    repeat: int


@dataclass(frozen=True)
class _Cell:
    config: dict
    overrides: dict
    key: str  # trial_key(config)


@dataclass
class Survey:
    """What a run needs to know of its sweep's trials before the first write, from one
    pass that resolves and checks every cell, without keeping their configs."""

    count: int = 0  # trials (a bayes sweep: its run_cap)
    fingerprint: str = ""  # keys.spec_fingerprint of the spec and its trials' keys
    first: dict | None = None  # the first trial's config; a bayes sweep's template
    data: list[dict] = field(default_factory=list)  # distinct data sections, first use first
    data_paths: set[str] = field(default_factory=set)  # data files as the spec names them


def repeat_seed(sweep_seed: int, repeat: int) -> int:
    """The config seed of repeat ``repeat``: a 32-bit draw from ``SeedSequence``."""
    sequence = np.random.SeedSequence(sweep_seed, spawn_key=(REPEAT_STREAM, repeat))
    return int(sequence.generate_state(1)[0])


def expand(spec: SweepSpec, *, max_trials: int = DEFAULT_MAX_TRIALS) -> list[Trial]:
    """Every trial of the sweep, resolved and validated; duplicates collapse to the first.

    Raises ``SpecError`` before returning anything if a cell is invalid, the metric does
    not apply to a cell, or the sweep has more than ``max_trials`` trials. It holds every
    config at once; a sweep's run streams them (``survey``, then ``iter_trials``).
    """
    return list(iter_trials(spec, max_trials=max_trials))


def iter_trials(spec: SweepSpec, *, max_trials: int = DEFAULT_MAX_TRIALS) -> Iterator[Trial]:
    """The trials of ``expand``, in its order, made one at a time: what stays in memory is
    trial keys (to drop duplicates), not configs. A bayes sweep has none.

    The size is checked at once. A cell that does not resolve raises when it is reached,
    so a caller that must write nothing on bad input checks a whole stream first
    (``survey``) and writes from a second one.
    """
    resolver = _Resolver(spec)
    if spec.method == "bayes":  # proposed while the sweep runs (nnchain.sweep.bayes)
        bayes_template(spec, max_trials=max_trials, resolver=resolver)
        return iter(())
    if spec.method == "grid":
        _check_grid_size(spec, max_trials)
        cells = functools.partial(_grid_cells, spec, resolver)
    else:
        _check_run_cap(spec, max_trials)
        cells = functools.partial(_random_cells, spec, resolver)
    return _trials(spec, cells)


def survey(spec: SweepSpec, *, max_trials: int = DEFAULT_MAX_TRIALS) -> Survey:
    """Resolve and check every trial of the sweep in one pass (``iter_trials``), keeping
    what a run needs before its first write; raises ``SpecError`` as ``expand`` does."""
    if spec.method == "bayes":
        template = bayes_template(spec, max_trials=max_trials)
        return Survey(count=spec.run_cap, fingerprint=spec_fingerprint(spec, ()),
                      first=template, data=[template["data"]])
    result = Survey()
    keys: set[str] = set()
    sections: set[str] = set()
    base_path = (spec.base.get("data") or {}).get("path")
    for trial in iter_trials(spec, max_trials=max_trials):
        result.count += 1
        keys.add(trial.key)
        if result.first is None:
            result.first = trial.config
        section = canonical_json(trial.config["data"])
        if section not in sections:
            sections.add(section)
            result.data.append(trial.config["data"])
        path = trial.overrides.get("data.path", base_path)
        if path:
            result.data_paths.add(str(path))
    result.fingerprint = spec_fingerprint(spec, keys)  # the keys are not kept
    return result


def bayes_template(spec: SweepSpec, *, max_trials: int = DEFAULT_MAX_TRIALS,
                   resolver: _Resolver | None = None) -> dict:
    """A bayes sweep's first random cell, resolved: it checks the space before anything
    is written, and gives the dataset every proposal shares."""
    if spec.run_cap > max_trials:
        raise SpecError("run_cap", f"the sweep has {spec.run_cap} trials, more than "
                                   f"max_trials={max_trials}; lower run_cap")
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(SAMPLE_STREAM,)))
    return (resolver or _Resolver(spec)).resolve(next(_draws(spec.parameters, rng)))


def cell_config(spec: SweepSpec, overrides: Mapping[str, Any]) -> dict:
    """The resolved config of one cell of ``spec`` (a bayes proposal)."""
    return _Resolver(spec).resolve(overrides)


def _trials(spec: SweepSpec, cells: Callable[[], Iterator[_Cell]]) -> Iterator[Trial]:
    """Repeats are the outer loop; each repeat walks a fresh stream of the cells (the
    same cells: the same seed) instead of keeping them."""
    if spec.repeats == 1:  # the cells are distinct, their configs the trials'
        for index, cell in enumerate(cells()):
            yield Trial(index, cell.key, cell.config, cell.overrides, 0)
        return
    index = 0
    seen: set[str] = set()
    for repeat in range(spec.repeats):
        seed = repeat_seed(spec.seed, repeat)
        for cell in cells():
            config = {**cell.config, "seed": seed}
            key = trial_key(config)
            if key not in seen:
                seen.add(key)
                yield Trial(index, key, config, {**cell.overrides, "seed": seed}, repeat)
                index += 1


def _check_grid_size(spec: SweepSpec, max_trials: int) -> None:
    size = space_size(spec.parameters) * spec.repeats
    if size > max_trials:
        factors = [str(space.size) for space in spec.parameters.values()]
        if spec.repeats > 1:
            factors.append(f"{spec.repeats} repeats")
        raise SpecError("parameters", f"the grid has {size} trials ({' x '.join(factors)}), "
                                      f"more than max_trials={max_trials}; narrow the values "
                                      f"or use method: random with a run_cap")


def _grid_cells(spec: SweepSpec, resolver: _Resolver) -> Iterator[_Cell]:
    paths = list(spec.parameters)
    ranges = [range(spec.parameters[path].size) for path in paths]
    return _distinct(resolver, (_at(spec.parameters, paths, indices)
                                for indices in itertools.product(*ranges)))


def _check_run_cap(spec: SweepSpec, max_trials: int) -> None:
    run_cap = spec.run_cap
    if run_cap * spec.repeats > max_trials:
        repeats = f" x {spec.repeats} repeats" if spec.repeats > 1 else ""
        raise SpecError("run_cap", f"the sweep has {run_cap * spec.repeats} trials "
                                   f"({run_cap} cells{repeats}), more than "
                                   f"max_trials={max_trials}; lower run_cap")


def _random_cells(spec: SweepSpec, resolver: _Resolver) -> Iterator[_Cell]:
    run_cap = spec.run_cap
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(SAMPLE_STREAM,)))
    parameters = spec.parameters
    if all(is_finite(space) for space in parameters.values()) and \
            space_size(parameters) <= PERMUTE_LIMIT:
        # exact sampling without replacement; fewer than run_cap only if the space
        # resolves to fewer configs
        yield from _distinct(resolver, _permutation(parameters, rng), run_cap)
        return
    max_draws = DRAWS_PER_CELL * run_cap + 1000
    found = 0
    for cell in _distinct(resolver, itertools.islice(_draws(parameters, rng), max_draws),
                          run_cap):
        found += 1
        yield cell
    if found < run_cap:
        raise SpecError("run_cap", f"random search found only {found} distinct cells in "
                                   f"{max_draws} draws, fewer than run_cap={run_cap}; lower "
                                   f"run_cap or widen the space")


def _distinct(resolver: _Resolver, candidates: Iterator[dict], limit: int | None = None
              ) -> Iterator[_Cell]:
    """Resolve candidate overrides in order, keeping the first cell of each trial key;
    stops at ``limit`` cells without resolving another candidate."""
    seen: set[str] = set()
    for overrides in candidates:
        config = resolver.resolve(overrides)
        key = trial_key(config)
        if key in seen:
            continue
        seen.add(key)
        yield _Cell(config, overrides, key)
        if limit is not None and len(seen) >= limit:
            return


def _at(parameters: Mapping[str, Space], paths: list[str], indices: tuple[int, ...]) -> dict:
    return {path: copy.deepcopy(parameters[path].at(index))
            for path, index in zip(paths, indices, strict=True)}


def _permutation(parameters: Mapping[str, Space], rng: np.random.Generator
                 ) -> Iterator[dict]:
    """Cells of a finite space in a random order, each once (last parameter fastest)."""
    paths = list(parameters)
    sizes = [parameters[path].size for path in paths]
    for flat in rng.permutation(space_size(parameters)):
        indices, rest = [], int(flat)
        for size in reversed(sizes):
            rest, index = divmod(rest, size)
            indices.append(index)
        yield _at(parameters, paths, tuple(reversed(indices)))


def _draws(parameters: Mapping[str, Space], rng: np.random.Generator) -> Iterator[dict]:
    """Independent draws: each parameter from its space, every draw in spec order."""
    while True:
        cell: dict[str, Any] = {}
        for path, space in parameters.items():
            if isinstance(space, Values):
                cell[path] = copy.deepcopy(space.values[int(rng.integers(space.size))])
            elif isinstance(space, Value):
                cell[path] = copy.deepcopy(space.value)
            elif isinstance(space, Distribution):
                cell[path] = space.sample(rng)
        yield cell


def describe_cell(overrides: Mapping[str, Any]) -> str:
    """``"train.lr=0.1, model.hidden=[4]"``: how a cell is named in messages."""
    return ", ".join(f"{path}={param_value(value)}" for path, value in overrides.items())


class _Resolver:
    """Resolves cells of one spec, loading each data file once to learn its task."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self._tasks: dict[tuple, tuple[str, int]] = {}

    def resolve(self, overrides: Mapping[str, Any]) -> dict:
        """The resolved config of one cell; errors name the cell's overrides."""
        raw = copy.deepcopy(self.spec.base)
        try:
            for path, value in overrides.items():
                set_path(raw, path, value)
            config = resolve_config(raw, task=self._file_task(raw.get("data")))
            self._check_metric(config)
        except SpecError as exc:
            if not overrides:
                raise
            raise SpecError(f"parameters (cell {describe_cell(overrides)})", str(exc)) from None
        return config

    def _check_metric(self, config: Mapping[str, Any]) -> None:
        metric = self.spec.metric.name
        data = config["data"]
        if metric.startswith("val_") and not data["val_fraction"] > 0:
            raise SpecError("metric.name", f"{metric} needs data.val_fraction > 0, got "
                                           f"{data['val_fraction']}; use "
                                           f"{metric.replace('val_', 'train_')}")
        if metric.endswith("_accuracy"):
            kind, _ = task_of(data) if "name" in data else self._task(data["path"],
                                                                      data.get("target"))
            if kind not in ("binary", "multiclass"):
                raise SpecError("metric.name", f"{metric} needs a classification task, the "
                                               f"data has a {kind} target; use "
                                               f"{metric.replace('_accuracy', '_cost')}")

    def _file_task(self, data: Any) -> tuple[str, int] | None:
        """The task of a file dataset (loaded once per path and target), else ``None``."""
        if not isinstance(data, Mapping) or data.get("name") is not None:
            return None
        path, target = data.get("path"), data.get("target")
        if not isinstance(path, str) or not path or not (target is None or
                                                         isinstance(target, str)):
            return None  # resolve_config says what is wrong
        if path.endswith(".csv") and target is None:
            return None
        return self._task(str(Path(path).expanduser().resolve()), target)

    def _task(self, path: str, target: str | None) -> tuple[str, int]:
        if (path, target) not in self._tasks:
            self._tasks[path, target] = task_of({"path": path, "target": target})
        return self._tasks[path, target]
