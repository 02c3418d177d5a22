"""Event posting for the controllers, aggregated as client-go's recorder does.

Owns one queue and one named thread per recorder: callers never wait on the
API.  A repeat of the same (object, type, reason, message) bumps `count` and
`lastTimestamp` of the event already posted instead of creating another.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from .base import Worker
from .kube import Kube, KubeError, now_rfc3339


class EventRecorder(Worker):
    """Posts core/v1 Events as `component` (e.g. default-scheduler)."""

    def __init__(self, kube: Kube, component: str, stop: threading.Event, *, max_remembered: int = 4096):
        super().__init__(f"kubelite-events-{component}", stop)
        self.kube = kube
        self.component = component
        self._items: "queue.Queue[tuple | None]" = queue.Queue()
        self._posted: dict[tuple, tuple[str, str, int]] = {}  # key -> (namespace, name, count)
        self._max = max_remembered

    what = "event not posted"
    retry_on = ()
    log_level = logging.DEBUG

    def next_keys(self) -> list:
        """Events are not deduplicated as keys are: a plain FIFO; None (from `wake`) is no event."""
        try:
            item = self._items.get(timeout=1.0)
        except queue.Empty:
            return []
        return [] if item is None else [item]

    def wake(self) -> None:
        self._items.put(None)

    def handle(self, item: tuple) -> None:
        self._post(*item)

    def event(self, obj: dict, event_type: str, reason: str, message: str) -> None:
        """Queue an event about `obj` (a full object with apiVersion/kind/metadata)."""
        meta = obj.get("metadata") or {}
        ref = {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": obj.get("kind", ""),
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if meta.get("namespace"):
            ref["namespace"] = meta["namespace"]
        self._items.put((ref, event_type, reason, message))

    def _post(self, ref: dict, event_type: str, reason: str, message: str) -> None:
        namespace = ref.get("namespace") or "default"
        key = (ref.get("uid"), ref.get("name"), event_type, reason, message)
        now = now_rfc3339()
        known = self._posted.get(key)
        if known is not None:
            ns, name, count = known
            try:
                self.kube.patch(f"/api/v1/namespaces/{ns}/events/{name}",
                                {"count": count + 1, "lastTimestamp": now})
                self._posted[key] = (ns, name, count + 1)
                return
            except KubeError as exc:
                if exc.status != 404:
                    raise
        name = f"{ref.get('name', 'object')}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref,
            "reason": reason, "message": message, "type": event_type,
            "source": {"component": self.component},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": self.component, "reportingInstance": "",
        }
        self.kube.create(f"/api/v1/namespaces/{namespace}/events", body)
        if len(self._posted) >= self._max:
            self._posted.pop(next(iter(self._posted)))
        self._posted[key] = (namespace, name, 1)
