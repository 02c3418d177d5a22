"""Ready-made observers; the default one traces every move as one log line."""

from __future__ import annotations

import logging

from fsm.machine import Move, state_label

FIELDS_ATTR = "fields"  # LogRecord attribute carrying the structured fields


class LogObserver:
    """Writes one structured line per move: kind, id, from, to, event, reason, elapsed.

    The fields travel on the record as ``record.fields`` (a dict) for structured
    formatters; the message itself is readable with any formatter.
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or logging.getLogger("fsm.trace")
        self.level = level

    def __call__(self, move: Move) -> None:
        if not self.logger.isEnabledFor(self.level):
            return
        fields = {
            "machine": move.kind,
            "id": move.machine_id,
            "from": state_label(move.source),
            "to": state_label(move.target),
            "event": move.event,
            "reason": move.reason,
            "elapsed": round(move.elapsed, 6),
        }
        self.logger.log(self.level, "transition %s %s: %s -> %s on %s%s after %.3fs",
                        move.kind, move.machine_id, state_label(move.source), state_label(move.target), move.event,
                        f" ({move.reason})" if move.reason else "", move.elapsed,
                        extra={FIELDS_ATTR: fields})
