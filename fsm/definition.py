"""The declaration of a machine: states, transitions, and their validation.

A definition is checked once, when declared, so that a wrong table fails at import
time rather than in the middle of a pod's life: exactly one initial state, every
state reachable, nothing leaving a final state, no ambiguous unguarded transition.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Guard = Callable[[Mapping[str, Any]], bool]


class DefinitionError(ValueError):
    """The transition table is inconsistent."""


@dataclass(frozen=True)
class Transition:
    """One row of the table: ``event`` moves any of ``sources`` to ``target``.

    ``guard`` (optional) is asked with the context passed to ``Machine.fire``; when
    several rows share an event and a source, the first whose guard passes wins.
    """

    event: str
    sources: Any  # one state or an iterable of states; stored as a frozenset
    target: enum.Enum
    guard: Guard | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        sources = (self.sources,) if isinstance(self.sources, enum.Enum) else self.sources
        object.__setattr__(self, "sources", frozenset(sources))


class Definition:
    """A validated machine table; build live instances with :meth:`new`."""

    def __init__(self, kind: str, states: type[enum.Enum], initial: enum.Enum,
                 transitions: Iterable[Transition], final: Iterable[enum.Enum] = ()) -> None:
        self.kind = kind
        self.states = states
        self.initial = initial
        self.transitions = tuple(transitions)
        self.final = frozenset(final)
        self._validate()
        index: dict[tuple[str, enum.Enum], list[Transition]] = {}
        for row in self.transitions:
            for source in row.sources:
                index.setdefault((row.event, source), []).append(row)
        self._index = {key: tuple(rows) for key, rows in index.items()}

    def __repr__(self) -> str:
        return f"<Definition {self.kind}: {len(self.transitions)} transitions>"

    @property
    def events(self) -> tuple[str, ...]:
        """Every event name, in declaration order."""
        return tuple(dict.fromkeys(row.event for row in self.transitions))

    def candidates(self, event: str, source: enum.Enum) -> tuple[Transition, ...]:
        """Rows that ``event`` may take from ``source``, in declaration order."""
        return self._index.get((event, source), ())

    def new(self, machine_id: str, *, observers: Iterable[Callable] = (), clock=None,
            state: enum.Enum | None = None):
        """A live machine at ``state`` (default: the initial state)."""
        from fsm.machine import Machine

        return Machine(self, machine_id, observers=observers, clock=clock, state=state)

    def _validate(self) -> None:
        members = set(self.states)
        if self.initial not in members:
            raise DefinitionError(f"{self.kind}: initial state {self.initial!r} is not a member of {self.states.__name__}")
        for row in self.transitions:
            if not row.sources:
                raise DefinitionError(f"{self.kind}: transition {row.event!r} has no source state")
            strangers = (set(row.sources) | {row.target}) - members
            if strangers:
                raise DefinitionError(f"{self.kind}: transition {row.event!r} names unknown states {sorted(map(str, strangers))}")
            leaving = row.sources & self.final
            if leaving:
                raise DefinitionError(f"{self.kind}: transition {row.event!r} leaves final state(s) {sorted(s.name for s in leaving)}")
        self._check_unambiguous()
        self._check_reachable()

    def _check_unambiguous(self) -> None:
        seen: dict[tuple[str, enum.Enum], Transition] = {}
        for row in self.transitions:
            for source in row.sources:
                earlier = seen.get((row.event, source))
                if earlier is not None and earlier.guard is None:
                    raise DefinitionError(
                        f"{self.kind}: event {row.event!r} from {source.name} is declared twice and the first has no guard")
                seen[(row.event, source)] = row

    def _check_reachable(self) -> None:
        reached = {self.initial}
        frontier = [self.initial]
        while frontier:
            state = frontier.pop()
            for row in self.transitions:
                if state in row.sources and row.target not in reached:
                    reached.add(row.target)
                    frontier.append(row.target)
        unreachable = set(self.states) - reached
        if unreachable:
            raise DefinitionError(f"{self.kind}: unreachable state(s) {sorted(s.name for s in unreachable)}")
