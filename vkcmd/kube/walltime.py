"""The node's walltime as arithmetic: the deadline, ``jiriaf.alivetime``, when to ask for the drain.

Pure: every function takes the times it needs (no clock, no API, no threads),
so the node controller's heartbeat only asks and acts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Walltime:
    """A walltime of ``seconds`` (0: unlimited) counted from ``started_at`` (wall-clock seconds)."""

    started_at: float
    seconds: int
    alivetime_interval: float = 60.0
    drain_margin: float = 60.0

    @property
    def deadline(self) -> float | None:
        """When the walltime ends (None: unlimited)."""
        return self.started_at + self.seconds if self.seconds > 0 else None

    def alivetime(self, now: float) -> int | None:
        """Whole seconds left (never negative), or None when unlimited."""
        deadline = self.deadline
        return None if deadline is None else max(0, int(deadline - now))

    def drain_lead(self, max_grace: float) -> float:
        """How long before the deadline the drain starts: the margin, or the longest grace if longer."""
        return max(self.drain_margin, max_grace)

    def drain_due(self, now: float, max_grace: float) -> bool:
        deadline = self.deadline
        return deadline is not None and now >= deadline - self.drain_lead(max_grace)

    def alivetime_due(self, now: float, written: int | None) -> int | None:
        """The alivetime to write now, or None: the first one, then every interval, and the final 0."""
        alive = self.alivetime(now)
        if alive is None or alive == written:
            return None
        if written is None or alive == 0 or written - alive >= self.alivetime_interval:
            return alive
        return None

    def next_wakeup(self, now: float, max_grace: float) -> float:
        """The next time something is due: an alivetime tick, the drain time or the deadline (inf: never)."""
        deadline = self.deadline
        if deadline is None:
            return float("inf")
        step = self.alivetime_interval
        next_tick = self.started_at + step * (int((now - self.started_at) / step) + 1)
        # next_tick is always after now; the deadline and the drain time count only while ahead
        return min(t for t in (next_tick, deadline, deadline - self.drain_lead(max_grace)) if t > now)
