"""The controllers' thread shape: a named thread tied to the stop event, and a worker draining keys.

Owns how a controller runs, not what it decides: `Loop` is a named daemon
thread that `join` wakes before joining; `Worker` takes keys from a
`WorkQueue` and calls the subclass's `handle(key)`, re-queuing the key after a
short pause when the API answered with a transient status.  Knows nothing of
any collection or kind.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Hashable

from .kube import KubeError

TRANSIENT = (0, 409, 429, 500, 503)  # unreachable, conflict, throttled, server trouble


class WorkQueue:
    """Keys to process, each at most once in the queue; `get` blocks up to a timeout."""

    def __init__(self) -> None:
        self._queue: "queue.Queue[str]" = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self._queue.put(key)

    def get(self, timeout: float) -> str | None:
        try:
            key = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._lock:
            self._pending.discard(key)
        return key

    def wake(self) -> None:
        """Unblock a waiting `get` (used when stopping)."""
        self._queue.put("")



class Loop:
    """A named daemon thread running `run()` until the stop event; `join` wakes it first."""

    def __init__(self, name: str, stop: threading.Event):
        self.stop_event = stop
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)

    def run(self) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        """Unblock whatever `run` waits on (called by `join`, after the stop event is set)."""

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)


class Worker(Loop):
    """A `Loop` that hands each queued key to `handle(key)`; one failed key never ends the loop.

    `retry_on`: KubeError statuses after which the key is queued again
    (after `retry_delay` seconds); `what` names the work in log lines.
    """

    what = "sync"
    retry_on: tuple[int, ...] = TRANSIENT
    retry_delay = 0.2
    log_level = logging.INFO

    def __init__(self, name: str, stop: threading.Event):
        super().__init__(name, stop)
        self.queue = WorkQueue()
        self.log = logging.getLogger(type(self).__module__)

    def handle(self, key: Hashable) -> None:
        raise NotImplementedError

    def next_keys(self) -> list:
        """The keys to handle now ([] to look at the stop event again)."""
        key = self.queue.get(timeout=1.0)
        return [key] if key else []

    def retry(self, key: Hashable) -> None:
        self.queue.add(key)

    def wake(self) -> None:
        self.queue.wake()

    def run(self) -> None:
        while not self.stop_event.is_set():
            for key in self.next_keys():
                if self.stop_event.is_set():
                    return
                self._handle(key)

    def _handle(self, key: Hashable) -> None:
        try:
            self.handle(key)
        except KubeError as exc:
            self.log.log(self.log_level, "%s %s: %s", self.what, key, exc)
            if exc.status in self.retry_on:
                self.stop_event.wait(self.retry_delay)
                self.retry(key)
        except Exception:  # noqa: BLE001 - keep the loop alive
            self.log.exception("%s %s failed", self.what, key)
