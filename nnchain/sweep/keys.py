"""Trial keys and sweep fingerprints: stable hashes of canonical JSON.

A trial key names a cell by *what it trains*: the resolved config, so two cells that
resolve alike (a value that only moves a dropped key) share one key, and the key does
not depend on dict ordering, YAML comments or the spec's file name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nnchain.sweep.spec import SweepSpec

KEY_LENGTH = 16
FINGERPRINT_VERSION = 1


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace; NaN and infinities are refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def trial_key(config: Mapping[str, Any]) -> str:
    """First 16 hex characters of the sha256 of the resolved config's canonical JSON."""
    return _digest(config)[:KEY_LENGTH]


def spec_fingerprint(spec: SweepSpec, trial_keys: Iterable[str]) -> str:
    """A hash of what a sweep promises: its set of trial keys, metric and search options.

    Resuming a sweep is refused when this changes. It covers ``method``, ``metric``,
    ``seed``, ``run_cap``, ``repeats``, the set (not the order) of trial keys,
    ``early_terminate`` where set, and for ``method: bayes`` (trials proposed as it runs)
    the base config and the parameters' space. It leaves
    out what does not change which trials exist or how they are judged: ``name``,
    ``experiment``, comments in the YAML, and the runner options ``max_retries`` and
    ``trial_timeout`` (resuming with more retries or a longer timeout is a reason to resume).
    ``trial_keys``: the keys of the expanded trials, not the trials, so that a caller
    (``expansion.survey``) need not hold their configs.
    """
    payload = {
        "version": FINGERPRINT_VERSION,
        "method": spec.method,
        "metric": {"name": spec.metric.name, "goal": spec.metric.goal},
        "seed": spec.seed,
        "run_cap": spec.run_cap,
        "repeats": spec.repeats,
        "trial_keys": sorted(set(trial_keys)),
    }
    # Added only where set, so sweeps recorded before these keys keep their fingerprint.
    if spec.early_terminate is not None:  # new decisions must follow the recorded ones' rule
        payload["early_terminate"] = asdict(spec.early_terminate)
    if spec.method == "bayes":  # its trials are proposed as it runs: the space is the promise
        payload["space"] = {"base": spec.base, "parameters": {
            path: {"type": type(space).__name__, **asdict(space)}
            for path, space in spec.parameters.items()}}
    return _digest(payload)
