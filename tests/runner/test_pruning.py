"""Rung arithmetic of early stopping against tables computed by hand."""

from __future__ import annotations

import math

import pytest

from nnchain.sweep.pruning import (
    EarlyTerminate,
    Pruner,
    bracket_sizes,
    quantile,
    round_robin,
    rung_epochs,
)


@pytest.mark.parametrize(("min_iter", "eta", "epochs", "rungs"), [
    (1, 3, 9, [1, 3]),  # 9 is not below 9
    (1, 3, 10, [1, 3, 9]),
    (5, 3, 100, [5, 15, 45]),
    (2, 2, 17, [2, 4, 8, 16]),
    (4, 2, 5, [4]),
])
def test_rungs_are_min_iter_times_powers_of_eta_below_the_epochs(min_iter, eta, epochs, rungs):
    assert rung_epochs(min_iter, eta, epochs) == rungs


def test_bracket_sizes_are_hyperbands():
    assert bracket_sizes(3, 3) == [27, 12, 6, 4]  # Li et al., R = 27, eta = 3
    assert bracket_sizes(2, 3) == [9, 5, 3]  # ceil(3/3*9), ceil(3/2*3), ceil(3/1*1)


def test_trials_are_dealt_to_brackets_by_a_smooth_weighted_round_robin():
    # weights 9, 5, 3 (sum 17), worked by hand: the running sums after each pick
    # [-8,5,3] [1,-7,6] [-7,-2,9] [2,3,-5] [-6,8,-2] [3,-4,1] [-5,1,4] [4,6,-10] [-4,11,-7]
    # [5,-1,-4]
    cycle = round_robin([9, 5, 3])
    assert cycle[:10] == [0, 1, 0, 2, 0, 1, 0, 2, 0, 1]
    assert [cycle.count(b) for b in range(3)] == [9, 5, 3] and len(cycle) == 17
    pruner = Pruner(EarlyTerminate("hyperband", 1, 3), 9, "minimize")
    assert [pruner.bracket(i) for i in (0, 1, 3, 17, 20)] == [0, 1, 2, 0, 2]
    assert [pruner.decision_epochs(i) for i in (0, 1, 3)] == [(1, 3), (3,), ()]
    asha = Pruner(EarlyTerminate("asha", 1, 3), 9, "minimize")
    assert {asha.bracket(i) for i in range(20)} == {0}


def test_quantile_interpolates_linearly():
    assert quantile([0.5], 1 / 3) == 0.5
    assert quantile([0.5, 0.7], 1 / 3) == pytest.approx(0.5 + 0.2 / 3)
    assert quantile([0.7, 0.4, 0.5], 1 / 3) == pytest.approx(0.4 + 0.1 * 2 / 3)
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


# trial, value at the rung (epoch 1) -> cutoff (None: first at the rung), stop
ASHA_MINIMIZE = [
    (10, 0.5, None, False),
    (11, 0.7, 0.5, True),  # recorded [0.5]: its 1/3-quantile is 0.5
    (12, 0.4, 0.5 + 0.2 / 3, False),  # recorded [0.5, 0.7]
    (13, 0.6, 0.4 + 0.1 * 2 / 3, True),  # recorded [0.4, 0.5, 0.7]
    (14, math.nan, 0.4 + 0.1, True),  # recorded [0.4, 0.5, 0.6, 0.7]: NaN always stops
]


def test_asha_decides_each_trial_at_once_against_the_rungs_record():
    pruner = Pruner(EarlyTerminate("asha", 1, 3), 9, "minimize")
    for trial, value, cutoff, stop in ASHA_MINIMIZE:
        assert pruner.decide(trial, 0, 2, value) is None  # epoch 2 is not a rung
        decision, new = pruner.decide(trial, 0, 1, value)
        assert new and (decision.epoch, decision.bracket, decision.rung) == (1, 0, 0)
        assert decision.stop is stop
        assert decision.cutoff == (None if cutoff is None else pytest.approx(cutoff))
    assert sorted(pruner.stopped) == [11, 13, 14]
    # a stopped trial is judged no more; a replayed epoch gets its recorded decision
    assert pruner.decide(11, 0, 3, 0.0) is None
    again, new = pruner.decide(11, 0, 1, 0.0)
    assert not new and again.stop and again.value == 0.7


def test_asha_maximize_keeps_the_top_third():
    pruner = Pruner(EarlyTerminate("asha", 2, 2), 8, "maximize")
    assert pruner.decision_epochs(0) == (2, 4)
    results = [pruner.decide(t, 0, 2, v)[0] for t, v in [(1, 0.6), (2, 0.5), (3, 0.9)]]
    # recorded [0.6]: cutoff 0.6; recorded [0.5, 0.6]: 1/2-quantile 0.55
    assert [(d.cutoff, d.stop) for d in results] == [(None, False), (0.6, True),
                                                     (pytest.approx(0.55), False)]
    decision, _ = pruner.decide(3, 0, 4, 0.95)  # alone at the second rung
    assert (decision.rung, decision.cutoff, decision.stop) == (1, None, False)


def test_hyperband_records_each_bracket_apart():
    pruner = Pruner(EarlyTerminate("hyperband", 1, 3), 9, "minimize")
    first, _ = pruner.decide(100, 0, 3, 0.5)  # bracket 0, its second rung
    second, _ = pruner.decide(101, 1, 3, 0.9)  # bracket 1, its first rung: alone there
    assert (first.bracket, first.rung, first.stop) == (0, 1, False)
    assert (second.bracket, second.rung, second.cutoff, second.stop) == (1, 0, None, False)
    assert pruner.decide(102, 3, 1, 9.0) is None  # bracket 2 never stops


def test_median_rule_waits_for_others_then_cuts_at_their_median():
    pruner = Pruner(EarlyTerminate("median", 2), 5, "minimize")
    assert pruner.decision_epochs(7) == (2, 3, 4)
    table = [  # trial, epoch, value -> cutoff, stop
        (1, 2, 0.5, None, False),
        (2, 2, 0.6, None, False),  # one other
        (3, 2, 0.7, 0.55, True),  # others [0.5, 0.6]
        (4, 2, 0.52, pytest.approx(0.6), False),  # others [0.5, 0.6, 0.7]
        (1, 3, 0.4, None, False),
    ]
    for trial, epoch, value, cutoff, stop in table:
        decision, new = pruner.decide(trial, 0, epoch, value)
        assert new and (decision.rung, decision.cutoff, decision.stop) == (epoch, cutoff, stop)


def test_loaded_decisions_are_kept_and_count_in_later_cutoffs():
    first = Pruner(EarlyTerminate("asha", 1, 3), 9, "minimize")
    made = [first.decide(t, 0, 1, v)[0] for t, v in [(1, 0.5), (2, 0.7)]]
    resumed = Pruner(EarlyTerminate("asha", 1, 3), 9, "minimize")
    resumed.load(made)
    assert resumed.decide(2, 0, 1, 0.1) == (made[1], False)  # not re-decided
    decision, new = resumed.decide(3, 0, 1, 0.6)
    assert new and decision.cutoff == pytest.approx(0.5 + 0.2 / 3) and decision.stop
