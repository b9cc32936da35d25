"""``method: bayes``: trials proposed by Optuna's TPE, used through ask-and-tell as a
sampler only; nnchain's ledger stays the record.

Each parameter maps to an Optuna distribution: ``values`` as a categorical over the
values' indices (so lists and mappings work), ``uniform`` / ``log_uniform`` as floats (log
scale for the latter), ``int_uniform`` as integers, ``q_*`` as their continuous kind, the
draw then rounded to a multiple of ``q`` as random search rounds it; ``value`` is fixed.
Trials in flight are told to TPE by its constant liar. The sampler is seeded with the
sweep seed, so with one trial in flight the proposals repeat exactly. A resume rebuilds
the study from the ledger: finished and pruned trials with their values, unfinished ones
as in flight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from nnchain.ledger.states import FAILED, FINISHED, PRUNED
from nnchain.sweep.space import Distribution, Value, Values, _round_significant
from nnchain.sweep.spec import SweepSpec

DUPLICATE_TRIES = 100  # proposals of an existing trial key before the search stops


def distributions(spec: SweepSpec) -> dict:
    """Optuna distributions of the spec's parameters (``value`` ones left out)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    found = {}
    for path, space in spec.parameters.items():
        if isinstance(space, Values):
            found[path] = CategoricalDistribution(list(range(space.size)))
        elif isinstance(space, Distribution):
            if space.kind == "int_uniform":
                found[path] = IntDistribution(int(space.min), int(space.max))
            else:
                found[path] = FloatDistribution(float(space.min), float(space.max),
                                                log="log" in space.kind)
    return found


def to_overrides(spec: SweepSpec, params: Mapping[str, Any]) -> dict:
    """A cell's overrides from an Optuna trial's params, in spec order."""
    overrides: dict[str, Any] = {}
    for path, space in spec.parameters.items():
        if isinstance(space, Value):
            overrides[path] = space.value
        elif isinstance(space, Values):
            overrides[path] = space.values[params[path]]
        elif space.kind == "int_uniform":
            overrides[path] = int(params[path])
        elif space.q is not None:
            overrides[path] = space._quantise(params[path])
        else:
            overrides[path] = min(max(_round_significant(params[path]), space.min), space.max)
    return overrides


def to_params(spec: SweepSpec, overrides: Mapping[str, Any]) -> dict:
    """Optuna params of a recorded cell (a resume): the inverse of ``to_overrides``."""
    params: dict[str, Any] = {}
    for path, space in spec.parameters.items():
        if isinstance(space, Values):
            params[path] = next(i for i, v in enumerate(space.values) if v == overrides[path])
        elif isinstance(space, Distribution):
            params[path] = overrides[path]
    return params


class BayesSampler:
    """TPE through ask-and-tell; ``ask`` gives a cell's overrides and a ticket to
    ``tell`` its result with."""

    def __init__(self, spec: SweepSpec) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spec = spec
        self.distributions = distributions(spec)
        sampler = optuna.samplers.TPESampler(seed=spec.seed, constant_liar=True)
        self.study = optuna.create_study(direction=spec.metric.goal, sampler=sampler)

    def ask(self):
        trial = self.study.ask(self.distributions)
        return trial, to_overrides(self.spec, trial.params)

    def tell(self, trial, state: str, value: float | None, epochs: int = 0) -> None:
        """A proposal's result: FINISHED or PRUNED with the metric, else failed."""
        from optuna.trial import TrialState

        finite = value is not None and math.isfinite(value)
        if state == PRUNED and finite:
            trial.report(value, epochs)
            self.study.tell(trial, state=TrialState.PRUNED)
        elif state == FINISHED and finite:
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=TrialState.FAIL)

    def add(self, overrides: Mapping[str, Any], state: str, value: float | None,
            epochs: int = 0) -> None:
        """A trial of the ledger, done before a resume, into the study's history."""
        import optuna
        from optuna.trial import TrialState

        finite = value is not None and math.isfinite(value)
        params = to_params(self.spec, overrides)
        if state == FINISHED and finite:
            made = optuna.trial.create_trial(params=params, distributions=self.distributions,
                                             value=value)
        elif state == PRUNED and finite:
            made = optuna.trial.create_trial(params=params, distributions=self.distributions,
                                             state=TrialState.PRUNED,
                                             intermediate_values={epochs: value})
        else:
            made = optuna.trial.create_trial(params=params, distributions=self.distributions,
                                             state=TrialState.FAIL)
        self.study.add_trial(made)

    def pending(self, overrides: Mapping[str, Any]):
        """A trial proposed before a resume and not done: in flight again (its ticket)."""
        self.study.enqueue_trial(to_params(self.spec, overrides), skip_if_exists=False)
        return self.study.ask(self.distributions)


class Proposals:
    """A bayes sweep's trials, proposed as slots free up and recorded in the ledger as
    they are: ``run_cap`` of them over the sweep's life, a resume included."""

    def __init__(self, ledger, sweep, spec: SweepSpec) -> None:
        self.ledger, self.sweep, self.spec = ledger, sweep, spec
        self.sampler = BayesSampler(spec)
        self._tickets: dict[int, Any] = {}  # trial id -> its Optuna trial, while in flight
        self._keys: set[str] = set()
        self.proposed = 0
        self.exhausted = False

    def load(self, trials: Iterable) -> None:
        """The history from the ledger: done trials told, the others in flight again."""
        for trial in sorted(trials, key=lambda t: t.index):
            self._keys.add(trial.key)
            self.proposed += 1
            if trial.state in (FINISHED, PRUNED):
                self.sampler.add(trial.overrides, trial.state, trial.metric, trial.epochs)
            else:
                self._tickets[trial.id] = self.sampler.pending(trial.overrides)

    def remaining(self) -> bool:
        return not self.exhausted and self.proposed < self.spec.run_cap

    def propose(self):
        """The next trial, recorded PENDING in the ledger; None once the space gives no
        new trial key in ``DUPLICATE_TRIES`` proposals (the sweep then has fewer)."""
        from nnchain.ledger import sweeps as ledger_ops
        from nnchain.sweep.expansion import cell_config
        from nnchain.sweep.keys import trial_key

        for _ in range(DUPLICATE_TRIES):
            ticket, overrides = self.sampler.ask()
            config = cell_config(self.spec, overrides)
            key = trial_key(config)
            if key in self._keys:
                self.sampler.tell(ticket, FAILED, None)  # a duplicate teaches nothing
                continue
            self._keys.add(key)
            trial = ledger_ops.add_trial(self.ledger, self.sweep.id, key=key,
                                         index=self.proposed, config=config,
                                         overrides=overrides)
            self.proposed += 1
            self._tickets[trial.id] = ticket
            return trial
        self.exhausted = True
        ledger_ops.update_sweep(self.ledger, self.sweep.id, trial_count=self.proposed)
        return None

    def tell(self, trial_id: int, state: str, value: float | None, epochs: int) -> None:
        ticket = self._tickets.pop(trial_id, None)
        if ticket is not None:
            self.sampler.tell(ticket, state, value, epochs)
