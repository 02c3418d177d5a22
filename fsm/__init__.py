"""Finite-state machines declared as tables (pure stdlib).

A :class:`Definition` is a validated table of states and named transitions; a
:class:`Machine` is one live instance that moves through it, thread-safely, and
tells its observers about every move. This package knows nothing of Kubernetes,
processes or HTTP: the product's machines are declared in ``vkcmd.machines``.
"""

from fsm.definition import Definition, DefinitionError, Transition
from fsm.machine import IllegalTransition, Machine, Move, state_label
from fsm.observers import LogObserver
from fsm.render import to_mermaid

__all__ = [
    "Definition",
    "DefinitionError",
    "IllegalTransition",
    "LogObserver",
    "Machine",
    "Move",
    "Transition",
    "state_label",
    "to_mermaid",
]
