"""Events on pods (and the node), posted as the kubelet posts them, repeats aggregated.

Callers never wait for the API: events are queued and one thread posts them.
A repeat of the same (object, type, reason, message) bumps ``count`` and
``lastTimestamp`` of the event already posted instead of creating another, so
``kubectl describe pod`` reads "x5 over 2m" rather than a wall of retries.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from vkcmd.kube.client import MERGE_PATCH, ApiError, KubeClient, path
from vkcmd.timefmt import rfc3339

log = logging.getLogger("vkcmd.kube.events")

NORMAL, WARNING = "Normal", "Warning"
COMPONENT = "kubelet"  # kubectl and dashboards group node events under this source


class EventRecorder:
    """Posts and aggregates events; ``record`` never blocks."""

    def __init__(self, client: KubeClient, node_name: str, *, clock: Callable[[], float] = time.time,
                 max_pending: int = 10000, cache_size: int = 4096) -> None:
        self._client = client
        self._node = node_name
        self._clock = clock
        self._pending: queue.Queue = queue.Queue(max_pending)
        self._posted: OrderedDict[tuple, tuple[str, int]] = OrderedDict()  # key -> (event name, count)
        self._cache_size = cache_size
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Post what is queued (within ``timeout``), then stop."""
        self._pending.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def record(self, pod: dict[str, Any], event_type: str, reason: str, message: str,
               container: str | None = None) -> None:
        try:
            self._pending.put_nowait((pod, event_type, reason, message, container, self._clock()))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            try:
                self._post(*item)
            except ApiError as error:
                log.debug("event not posted: %s", error)
            except Exception:
                log.exception("posting an event failed")

    def _post(self, pod: dict[str, Any], event_type: str, reason: str, message: str,
              container: str | None, when: float) -> None:
        meta = pod.get("metadata") or {}
        kind = pod.get("kind") or "Pod"
        namespace = meta.get("namespace", "default")  # (a Node's events go to "default", as the kubelet's)
        key = (meta.get("uid"), container, event_type, reason, message)
        stamp = rfc3339(when)
        known = self._posted.get(key)
        if known is not None:
            name, count = known
            try:
                self._client.patch(path(resource="events", namespace=namespace, name=name),
                                   {"count": count + 1, "lastTimestamp": stamp}, MERGE_PATCH)
                self._remember(key, name, count + 1)
                return
            except ApiError as error:
                if not error.not_found:
                    raise
        involved = {"kind": kind, "apiVersion": "v1", "name": meta.get("name"), "uid": meta.get("uid")}
        if kind == "Pod":
            involved.update(namespace=namespace, resourceVersion=meta.get("resourceVersion"))
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": involved, "reason": reason, "message": message, "type": event_type,
            "source": {"component": COMPONENT, "host": self._node},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "reportingComponent": COMPONENT, "reportingInstance": self._node,
        }
        created = self._client.create(path(resource="events", namespace=namespace), body)
        self._remember(key, created["metadata"]["name"], 1)

    def _remember(self, key: tuple, name: str, count: int) -> None:
        self._posted[key] = (name, count)
        self._posted.move_to_end(key)
        while len(self._posted) > self._cache_size:
            self._posted.popitem(last=False)
