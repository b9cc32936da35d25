"""Learning-rate schedules: values at known epochs, validation, pickling."""

from __future__ import annotations

import math
import pickle

import pytest

from nnchain.errors import SpecError
from nnchain.nn import SCHEDULES, make_schedule


def test_registry():
    assert set(SCHEDULES) == {"constant", "step", "exponential", "cosine"}


def test_constant():
    schedule = make_schedule("constant", 0.1, epochs=10)
    assert [schedule(e) for e in (0, 5, 99)] == [0.1, 0.1, 0.1]


def test_step():
    schedule = make_schedule("step", 0.1, epochs=10, gamma=0.5, step_size=3)
    assert [schedule(e) for e in range(7)] == pytest.approx(
        [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])
    default = make_schedule("step", 1.0, epochs=9)  # step_size defaults to epochs // 3
    assert [default(e) for e in (2, 3, 6)] == pytest.approx([1.0, 0.5, 0.25])


def test_exponential():
    schedule = make_schedule("exponential", 0.2, epochs=10, gamma=0.9)
    assert schedule(0) == pytest.approx(0.2)
    assert schedule(3) == pytest.approx(0.2 * 0.9 ** 3)


def test_cosine():
    schedule = make_schedule("cosine", 0.1, epochs=10, min_lr=0.01)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(5) == pytest.approx(0.01 + 0.09 * 0.5)
    assert schedule(10) == pytest.approx(0.01)
    assert schedule(15) == pytest.approx(0.01)
    values = [schedule(e) for e in range(11)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert schedule(2) == pytest.approx(0.01 + 0.045 * (1 + math.cos(math.pi * 0.2)))


def test_values_are_python_floats_and_schedules_pickle():
    for name in SCHEDULES:
        schedule = pickle.loads(pickle.dumps(make_schedule(name, 0.1, epochs=10)))
        assert type(schedule(3)) is float


@pytest.mark.parametrize("args, kwargs, field", [
    (("linear", 0.1), {"epochs": 10}, "schedule"),
    (("step", 0.0), {"epochs": 10}, "lr"),
    (("step", 0.1), {"epochs": 0}, "epochs"),
    (("step", 0.1), {"epochs": 10, "gamma": -1.0}, "gamma"),
    (("step", 0.1), {"epochs": 10, "step_size": 0}, "step_size"),
    (("cosine", 0.1), {"epochs": 10, "min_lr": 0.5}, "min_lr"),
])
def test_validation(args, kwargs, field):
    with pytest.raises(SpecError) as error:
        make_schedule(*args, **kwargs)
    assert error.value.field == field
