"""A keyed work queue with delayed adds, in the manner of client-go's workqueue.

A key waits at most once in the queue however often it is added; a key being
processed is never handed to a second worker, and an add during processing
runs it again afterwards. Delayed adds share one timer thread (a heap), so
back-offs and deadlines cost no thread per pod; a key keeps only its earliest
delayed add, so the heap is bounded by the number of keys, however often they are re-added.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

log = logging.getLogger("vkcmd.workqueue")


class WorkQueue:
    """Keys to process; ``get`` blocks, ``done`` releases the key."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # workers wait here: one add wakes one worker
        self._timer_cond = threading.Condition(lock)  # the timer thread waits here: woken by an earlier deadline
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()  # queued or to be re-queued after processing
        self._processing: set[Hashable] = set()
        self._timers: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, tuple[float, int]] = {}  # key -> its one heap entry (the earliest add)
        self._counter = itertools.count()
        self._shutdown = False
        self._timer_thread: threading.Thread | None = None  # started by the first delayed add

    def __bool__(self) -> bool:
        return True  # a queue is a queue even when empty (``queue or default`` must not pick default)

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def add(self, key: Hashable) -> None:
        with self._cond:
            if self._shutdown or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Add ``key`` once ``delay`` seconds have passed (at once when <= 0)."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutdown:
                return
            when = self._clock() + delay
            held = self._due.get(key)
            if held is not None and held[0] <= when:
                return  # an earlier add of the key wakes it first; that sync re-adds what it still needs
            if held is not None:  # replaced by this earlier one: one entry per key (O(keys), no growth)
                self._timers.remove((*held, key))
                heapq.heapify(self._timers)
            entry = (when, next(self._counter), key)
            self._due[key] = entry[:2]
            heapq.heappush(self._timers, entry)
            if self._timer_thread is None:
                self._timer_thread = threading.Thread(target=self._run_timers, name=f"{self.name}-timers",
                                                      daemon=True)
                self._timer_thread.start()
            elif self._timers[0] is entry:
                self._timer_cond.notify()  # the new add is now the first due: the timer thread re-arms

    def timers(self) -> int:
        """Delayed adds held (bounded by the number of keys)."""
        with self._cond:
            return len(self._timers)

    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next key (now being processed), or None on shutdown or timeout."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._queue and not self._shutdown:
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._shutdown:
                return None
            key = self._queue.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            return key

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
            self._timer_cond.notify_all()
            timer = self._timer_thread
        if timer is not None:
            timer.join(5)

    def _run_timers(self) -> None:
        with self._cond:
            while not self._shutdown:
                now = self._clock()
                while self._timers and self._timers[0][0] <= now:
                    _, _, key = heapq.heappop(self._timers)
                    del self._due[key]
                    if key not in self._dirty:
                        self._dirty.add(key)
                        if key not in self._processing:
                            self._queue.append(key)
                            self._cond.notify()
                wait = self._timers[0][0] - now if self._timers else None
                self._timer_cond.wait(wait)


def run_workers(queue: WorkQueue, process: Callable[[Hashable], None], count: int) -> list[threading.Thread]:
    """Start ``count`` named worker threads calling ``process(key)`` until shutdown."""

    def work() -> None:
        while True:
            key = queue.get()
            if key is None:
                return
            try:
                process(key)
            except Exception:
                log.exception("%s: processing %r failed", queue.name, key)
            finally:
                queue.done(key)

    threads = [threading.Thread(target=work, name=f"{queue.name}-{i}", daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads
