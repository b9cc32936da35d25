"""Sweep specs: parsing and validation, search spaces, expansion into trials, trial keys.

Importing this package stays light (numpy, PyYAML and ``nnchain.config``; no ray or
mlflow): the CLI validates a spec with it before anything heavy is imported.
"""

from nnchain.sweep.expansion import (
    DEFAULT_MAX_TRIALS,
    Survey,
    Trial,
    describe_cell,
    expand,
    iter_trials,
    repeat_seed,
    survey,
)
from nnchain.sweep.keys import spec_fingerprint, trial_key
from nnchain.sweep.space import Distribution, Value, Values
from nnchain.sweep.spec import (
    METRICS,
    Metric,
    SweepSpec,
    apply_spec_overrides,
    load_sweep_spec,
    parse_sweep_spec,
    spec_kind,
)

__all__ = [
    "DEFAULT_MAX_TRIALS",
    "METRICS",
    "Distribution",
    "Metric",
    "Survey",
    "SweepSpec",
    "Trial",
    "Value",
    "Values",
    "apply_spec_overrides",
    "describe_cell",
    "expand",
    "iter_trials",
    "load_sweep_spec",
    "parse_sweep_spec",
    "repeat_seed",
    "spec_fingerprint",
    "spec_kind",
    "survey",
    "trial_key",
]
