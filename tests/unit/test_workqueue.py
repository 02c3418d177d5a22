"""The keyed work queue: dedup, no concurrent processing of a key, delayed adds."""

import threading
import time

from vkcmd.workqueue import WorkQueue, run_workers


def test_a_key_waits_once_however_often_added():
    queue = WorkQueue("t")
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert queue.get() == "a" and queue.get() == "b"
    assert queue.get(timeout=0.05) is None
    queue.shutdown()


def test_an_add_during_processing_runs_again_after_done():
    queue = WorkQueue("t")
    queue.add("a")
    key = queue.get()
    queue.add("a")
    assert queue.get(timeout=0.05) is None  # not handed out while being processed
    queue.done(key)
    assert queue.get(timeout=1) == "a"
    queue.shutdown()


def test_add_after_fires_in_order_of_deadline():
    queue = WorkQueue("t")
    started = time.monotonic()
    queue.add_after("late", 0.2)
    queue.add_after("soon", 0.05)
    assert queue.get(timeout=2) == "soon"
    assert queue.get(timeout=2) == "late"
    assert time.monotonic() - started >= 0.2
    queue.shutdown()


def test_workers_never_process_one_key_concurrently():
    queue = WorkQueue("t")
    active, overlaps, seen = set(), [], []
    lock = threading.Lock()

    def process(key):
        with lock:
            if key in active:
                overlaps.append(key)
            active.add(key)
        time.sleep(0.002)
        with lock:
            active.discard(key)
            seen.append(key)

    threads = run_workers(queue, process, 4)
    for i in range(200):
        queue.add(i % 5)
        time.sleep(0.0005)
    deadline = time.monotonic() + 5
    while (len(queue) or active) and time.monotonic() < deadline:
        time.sleep(0.01)
    queue.shutdown()
    for thread in threads:
        thread.join(2)
    assert not overlaps
    assert set(seen) == set(range(5))


def test_shutdown_releases_waiters():
    queue = WorkQueue("t")
    results = []
    waiter = threading.Thread(target=lambda: results.append(queue.get()))
    waiter.start()
    time.sleep(0.05)
    queue.shutdown()
    waiter.join(2)
    assert results == [None]


def test_a_key_keeps_only_its_earliest_delayed_add():
    queue = WorkQueue("t")
    for _ in range(1000):
        queue.add_after("a", 100)  # a deadline re-added on every sync
    for n in range(1000):
        queue.add_after("b", 100 - n * 0.05)  # each earlier than the one before
    assert queue.timers() == 2
    queue.add_after("a", 0.05)
    assert queue.get(timeout=2) == "a"  # the earlier add wins
    queue.done("a")
    assert queue.get(timeout=0.3) is None  # and the later ones of "a" are gone with it
    queue.shutdown()


def test_the_heap_stays_bounded_when_an_earlier_add_fires_and_the_later_is_re_added():
    queue = WorkQueue("t")
    for _ in range(50):  # a pod with a long deadline and a short probe period
        queue.add_after("p", 3600)
        queue.add_after("p", 0.01)
        assert queue.get(timeout=2) == "p"
        queue.done("p")
    assert queue.timers() <= 1
    queue.shutdown()
