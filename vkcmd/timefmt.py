"""Kubernetes time formats: metav1.Time (seconds) and metav1.MicroTime (a leaf module any layer may use)."""

from __future__ import annotations

import datetime as _dt


def rfc3339(timestamp: float) -> str:
    """``2006-01-02T15:04:05Z`` (metav1.Time: whole seconds, UTC)."""
    return _dt.datetime.fromtimestamp(int(timestamp), _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(timestamp: float) -> str:
    """``2006-01-02T15:04:05.000000Z`` (metav1.MicroTime, used by Leases and events.k8s.io)."""
    return _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time as the API writes it."""
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
