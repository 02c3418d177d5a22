"""The walltime arithmetic, without a clock or an API: deadline, alivetime, drain lead, next wake-up."""

import pytest

from vkcmd.kube.walltime import Walltime

W = Walltime(started_at=1000.0, seconds=300, alivetime_interval=60.0, drain_margin=30.0)


def test_unlimited_has_no_deadline_and_never_wakes_or_drains():
    w = Walltime(1000.0, 0)
    assert w.deadline is None and w.alivetime(5000.0) is None
    assert w.next_wakeup(1000.0, 10.0) == float("inf")
    assert not w.drain_due(10 ** 9, 0.0)
    assert w.alivetime_due(2000.0, None) is None


@pytest.mark.parametrize("now, alive", [(1000.0, 300), (1000.9, 299), (1299.5, 0), (1300.0, 0), (1500.0, 0)])
def test_alivetime_is_whole_seconds_left_never_negative(now, alive):
    assert W.deadline == 1300.0
    assert W.alivetime(now) == alive


@pytest.mark.parametrize("max_grace, lead", [(0.0, 30.0), (29.0, 30.0), (120.0, 120.0)])
def test_the_drain_starts_the_margin_or_the_longest_grace_before_the_end(max_grace, lead):
    assert W.drain_lead(max_grace) == lead
    assert not W.drain_due(1300.0 - lead - 0.01, max_grace)
    assert W.drain_due(1300.0 - lead, max_grace)


@pytest.mark.parametrize("now, written, due", [
    (1000.0, None, 300),   # the first one
    (1030.0, 300, None),   # half an interval later: not yet
    (1060.0, 300, 240),    # one interval down
    (1060.0, 240, None),   # already written
    (1299.9, 60, 0),       # the final zero, whatever the interval
    (1400.0, 0, None),     # stays zero
])
def test_alivetime_is_written_first_then_every_interval_then_zero(now, written, due):
    assert W.alivetime_due(now, written) == due


@pytest.mark.parametrize("now, max_grace, wake", [
    (1000.0, 0.0, 1060.0),   # next alivetime tick
    (1059.99, 0.0, 1060.0),
    (1060.0, 0.0, 1120.0),   # a tick exactly now: the next one
    (1250.0, 0.0, 1270.0),   # the drain time (1300 - 30) before the tick at 1300
    (1250.0, 80.0, 1300.0),  # drain time (1220) passed: the deadline, equal to the tick
    (1280.0, 0.0, 1300.0),   # drain time passed
])
def test_the_next_wakeup_is_the_earliest_thing_ahead(now, max_grace, wake):
    assert W.next_wakeup(now, max_grace) == pytest.approx(wake)
    assert W.next_wakeup(now, max_grace) > now
