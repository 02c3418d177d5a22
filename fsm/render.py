"""Render a definition for the docs (Mermaid ``stateDiagram-v2``)."""

from __future__ import annotations

from fsm.definition import Definition
from fsm.machine import state_label


def to_mermaid(definition: Definition) -> str:
    """A Mermaid state diagram of the table, one arrow per (source, event)."""
    lines = ["stateDiagram-v2", f"    [*] --> {state_label(definition.initial)}"]
    for row in definition.transitions:
        label = row.event + (" [guarded]" if row.guard else "")
        for source in sorted(row.sources, key=lambda s: list(definition.states).index(s)):
            lines.append(f"    {state_label(source)} --> {state_label(row.target)}: {label}")
    for state in sorted(definition.final, key=lambda s: list(definition.states).index(s)):
        lines.append(f"    {state_label(state)} --> [*]")
    return "\n".join(lines) + "\n"
