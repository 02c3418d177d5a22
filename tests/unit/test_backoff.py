"""The back-off helper: bounded waits, bounded retries, a give-up logged once and raised."""

import logging
import threading
import time

import pytest

from vkcmd.backoff import Backoff, PerKey, delay, retry

log = logging.getLogger("test.backoff")


def test_delays_double_up_to_the_maximum():
    assert [delay(n, 0.5, 4.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b = Backoff(0.5, 4.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


def test_jitter_spreads_but_never_exceeds_the_maximum():
    b = Backoff(1.0, 2.0, jitter=0.5)
    waits = [b.next() for _ in range(200)]
    assert all(0.75 <= w <= 2.0 for w in waits) and len({round(w, 6) for w in waits}) > 10


@pytest.mark.parametrize("initial, maximum", [(0, 1), (2, 1), (-1, 5)])
def test_nonsense_bounds_are_refused(initial, maximum):
    with pytest.raises(ValueError):
        Backoff(initial, maximum)


class Conflict(Exception):
    pass


def test_retry_returns_once_the_action_succeeds():
    calls = []

    def action():
        calls.append(1)
        if len(calls) < 3:
            raise Conflict()
        return "done"

    assert retry(action, attempts=5, retry_on=lambda e: isinstance(e, Conflict), what="x", log=log,
                 backoff=Backoff(0.001, 0.01)) == "done"
    assert len(calls) == 3


def test_a_give_up_is_logged_once_and_raised(caplog):
    calls = []

    def action():
        calls.append(1)
        raise Conflict("kept changing")

    with caplog.at_level(logging.WARNING, logger="test.backoff"), pytest.raises(Conflict):
        retry(action, attempts=3, retry_on=lambda e: isinstance(e, Conflict), what="renewing the thing", log=log,
              backoff=Backoff(0.001, 0.01))
    assert len(calls) == 3
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["gave up renewing the thing after 3 attempt(s): kept changing"]


def test_other_errors_are_raised_at_once_without_a_give_up_line(caplog):
    calls = []

    def action():
        calls.append(1)
        raise KeyError("other")

    with caplog.at_level(logging.WARNING, logger="test.backoff"), pytest.raises(KeyError):
        retry(action, attempts=3, retry_on=lambda e: isinstance(e, Conflict), what="x", log=log)
    assert len(calls) == 1 and not caplog.records


def test_a_stop_ends_the_waits():
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    with pytest.raises(Conflict):
        retry(lambda: (_ for _ in ()).throw(Conflict()), attempts=10, retry_on=lambda e: True, what="x", log=log,
              backoff=Backoff(5.0, 5.0), stop=stop)
    assert time.monotonic() - started < 2


def test_per_key_failures_from_many_threads_are_all_counted():
    per_key = PerKey(0.5, 30.0)

    def fail(n):
        for _ in range(n):
            per_key.failed("uid")

    threads = [threading.Thread(target=fail, args=(2000,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failures, wait = per_key.failed("uid")
    assert failures == 8001 and wait == 30.0
    per_key.succeeded("uid")
    assert per_key.failed("uid") == (1, 0.5) and len(per_key) == 1
