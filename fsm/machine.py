"""A live machine: the one place where a state changes.

Every change goes through :meth:`Machine.fire`; nothing assigns the state
directly. Firing is thread-safe and run-to-completion: an event fired by an
observer while a move is being announced is queued and applied after it, never
nested, so observers always see moves in the order they happened.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fsm.definition import Definition, Transition

_log = logging.getLogger("fsm")


def state_label(state: enum.Enum) -> str:
    """How a state is shown in logs and docs: its string value, else its name."""
    return state.value if isinstance(state.value, str) else state.name


class IllegalTransition(RuntimeError):
    """The event is not allowed from the machine's current state (nothing changed)."""

    def __init__(self, kind: str, machine_id: str, event: str, state: enum.Enum, reason: str = "") -> None:
        detail = f" ({reason})" if reason else ""
        super().__init__(f"{kind} {machine_id}: event {event!r} is not allowed in state {state_label(state)}{detail}")
        self.kind = kind
        self.machine_id = machine_id
        self.event = event
        self.state = state


@dataclass(frozen=True)
class Move:
    """What observers are told: one transition that happened."""

    kind: str
    machine_id: str
    source: enum.Enum
    target: enum.Enum
    event: str
    reason: str
    elapsed: float  # seconds spent in ``source``
    at: float  # wall-clock time of the move (time.time())
    context: Mapping[str, Any] = field(default_factory=dict)


Observer = Callable[[Move], None]


class Machine:
    """One instance of a :class:`Definition`, identified by ``machine_id``."""

    def __init__(self, definition: Definition, machine_id: str, *, observers: Iterable[Observer] = (),
                 clock: Callable[[], float] | None = None, state: enum.Enum | None = None) -> None:
        self.definition = definition
        self.id = machine_id
        self._observers = list(observers)
        self._clock = clock or time.monotonic
        self._lock = threading.RLock()
        self._state = definition.initial if state is None else state
        if self._state not in set(definition.states):
            raise ValueError(f"{definition.kind} {machine_id}: {state!r} is not a state of this machine")
        self._entered = self._clock()
        self._queue: deque[tuple[str, str, dict]] = deque()
        self._announcing = False

    def __repr__(self) -> str:
        return f"<{self.definition.kind} {self.id} {state_label(self._state)}>"

    @property
    def kind(self) -> str:
        return self.definition.kind

    @property
    def state(self) -> enum.Enum:
        return self._state

    @property
    def is_final(self) -> bool:
        return self._state in self.definition.final

    def time_in_state(self) -> float:
        """Seconds since the current state was entered."""
        return self._clock() - self._entered

    def add_observer(self, observer: Observer) -> None:
        with self._lock:
            self._observers.append(observer)

    def can_fire(self, event: str, **context: Any) -> bool:
        """Whether ``event`` would move the machine now (guards are asked)."""
        with self._lock:
            return self._select(event, context) is not None

    def fire(self, event: str, reason: str = "", **context: Any) -> enum.Enum | None:
        """Apply ``event``; return the new state.

        Raises :class:`IllegalTransition` (state unchanged) when no row allows it.
        Called from inside an observer of this machine, the event is queued and
        applied once the current move is announced; ``None`` is returned then.
        """
        with self._lock:
            if self._announcing:
                self._queue.append((event, reason, context))
                return None
            moved_to = self._apply(event, reason, context)
            self._drain_queue()
            return moved_to

    def fire_if_allowed(self, event: str, reason: str = "", **context: Any) -> enum.Enum | None:
        """Like :meth:`fire`, but return ``None`` instead of raising when not allowed."""
        with self._lock:
            if not self._announcing and self._select(event, context) is None:
                return None
            return self.fire(event, reason, **context)

    def _select(self, event: str, context: Mapping[str, Any]) -> Transition | None:
        for row in self.definition.candidates(event, self._state):
            if row.guard is None or row.guard(context):
                return row
        return None

    def _apply(self, event: str, reason: str, context: dict) -> enum.Enum:
        row = self._select(event, context)
        if row is None:
            raise IllegalTransition(self.kind, self.id, event, self._state, reason)
        now = self._clock()
        move = Move(self.kind, self.id, self._state, row.target, event, reason,
                    elapsed=now - self._entered, at=time.time(), context=dict(context))
        self._state, self._entered = row.target, now  # the only assignment of the state
        self._announce(move)
        return row.target

    def _announce(self, move: Move) -> None:
        self._announcing = True
        try:
            for observer in tuple(self._observers):
                try:
                    observer(move)
                except Exception:  # an observer must not undo or block a move
                    _log.exception("observer %r failed on %s %s", observer, move.kind, move.machine_id)
        finally:
            self._announcing = False

    def _drain_queue(self) -> None:
        while self._queue:
            event, reason, context = self._queue.popleft()
            try:
                self._apply(event, reason, context)
            except IllegalTransition:
                _log.warning("queued event %r dropped: not allowed from %s in %s %s",
                             event, state_label(self._state), self.kind, self.id)
