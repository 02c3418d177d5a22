"""Back-off for the hand-written retry loops: bounded, jittered delays and a bounded retry.

Every wait it hands out is bounded (``maximum``), and :func:`retry` gives up
after a fixed number of attempts, logging the give-up once before it re-raises.
It knows nothing of what is retried (no Kubernetes, no processes).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def delay(attempt: int, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0) -> float:
    """The wait before retry number ``attempt`` (1-based): ``initial`` growing by ``factor``, at most ``maximum``."""
    wait = initial
    for _ in range(max(0, attempt - 1)):  # (no factor ** attempt: it overflows after a long outage)
        wait *= factor
        if wait >= maximum:
            return maximum
    return min(maximum, wait)


class Backoff:
    """Delays for one retry loop: grows on :meth:`next`, starts over on :meth:`reset`.

    ``jitter`` spreads each delay by ±jitter/2 of itself, so that nodes that lost
    the API together do not come back in step. Not thread-safe: one per loop.
    """

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, *, factor: float = 2.0,
                 jitter: float = 0.0) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"back-off needs 0 < initial <= maximum, got {initial}, {maximum}")
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self.attempts = 0

    def next(self) -> float:
        self.attempts += 1
        wait = delay(self.attempts, self.initial, self.maximum, self.factor)
        if self.jitter:
            wait *= 1 + self.jitter * (random.random() - 0.5)
        return min(wait, self.maximum)

    def reset(self) -> None:
        self.attempts = 0


class PerKey:
    """Consecutive failures per key (a pod's uid), shared by several worker threads."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self._initial, self._maximum = initial, maximum
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def failed(self, key: str) -> tuple[int, float]:
        """Count one more failure of ``key``: (failures in a row, the wait before the next attempt)."""
        with self._lock:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
        return failures, delay(failures, self._initial, self._maximum)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._failures)


def retry(action: Callable[[], T], *, attempts: int, retry_on: Callable[[Exception], bool], what: str,
          log: logging.Logger, backoff: Backoff | None = None, stop: threading.Event | None = None) -> T:
    """Call ``action`` until it returns, at most ``attempts`` times, waiting by ``backoff`` between.

    An exception ``retry_on`` refuses is raised at once. When the attempts are
    spent (or ``stop`` is set), the give-up is logged once, naming ``what``, and
    the last exception is raised for the caller to handle.
    """
    if attempts < 1:
        raise ValueError(f"retry needs at least one attempt, got {attempts}")
    backoff = backoff or Backoff(0.05, 1.0)
    waiter = stop or threading.Event()
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:
            if not retry_on(error):
                raise
            if attempt == attempts or waiter.is_set():
                log.warning("gave up %s after %d attempt(s): %s", what, attempt, error)
                raise
            waiter.wait(backoff.next())
    raise AssertionError("unreachable")
