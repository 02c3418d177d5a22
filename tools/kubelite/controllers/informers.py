"""Shared list+watch informers for the controllers, as client-go's shared informer factory.

Owns the caches: one `Informer` per collection (and query) keeps a list+watch
cache in a named thread and tells handlers about changes; `Informers` hands
the same informer to every controller that asks for a collection.  Knows
nothing of what the controllers decide.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from typing import Callable, Iterator

from .base import Loop
from .kube import Kube, KubeError, obj_key

log = logging.getLogger(__name__)


def _lines(raw) -> Iterator[bytes]:
    buffer = bytearray()
    for segment in raw.stream(amt=None, decode_content=False):
        buffer.extend(segment)
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                break
            line = bytes(buffer[:newline])
            del buffer[:newline + 1]
            if line.strip():
                yield line


Handler = Callable[[str, dict, "dict | None"], None]


class Informer(Loop):
    """A list+watch cache of one collection, kept by a named thread.

    Handlers are called from that thread as `handler(event, obj, old)` with
    event ADDED, MODIFIED or DELETED; they must not block (enqueue instead).
    After a watch failure the collection is re-listed and differences are
    reported as events, so a handler never misses a final state.
    """

    def __init__(self, kube: Kube, path: str, *, name: str, stop: threading.Event,
                 query: dict | None = None, watch_timeout: int = 60):
        super().__init__(f"kubelite-informer-{name}", stop)
        self.kube = kube
        self.path = path
        self.name = name
        self.query = dict(query or {})
        self.watch_timeout = watch_timeout
        self._lock = threading.Lock()
        self._cache: dict[str, dict] = {}
        self._handlers: list[Handler] = []
        self._response = None
        self.synced = threading.Event()

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def wake(self) -> None:
        self.close()

    def close(self) -> None:
        """Unblock the watch read; the thread sees the stop event and ends."""
        response = self._response
        if response is not None:
            for method in ("shutdown", "close"):
                try:
                    getattr(response, method)()
                except Exception:  # noqa: BLE001 - best effort while stopping
                    pass

    def items(self) -> list[dict]:
        with self._lock:
            return list(self._cache.values())

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self._cache.get(key)

    # -- the loop -------------------------------------------------------------

    def _emit(self, event: str, obj: dict, old: dict | None) -> None:
        for handler in self._handlers:
            try:
                handler(event, obj, old)
            except Exception:  # noqa: BLE001 - a handler bug must not kill the informer
                log.exception("informer %s: handler failed on %s", self.name, event)

    def _relist(self) -> str:
        body = self.kube.get(self.path, **self.query)
        fresh = {obj_key(o): o for o in body.get("items") or []}
        with self._lock:
            previous = self._cache
            self._cache = dict(fresh)
        for key, obj in fresh.items():
            old = previous.get(key)
            if old is None:
                self._emit("ADDED", obj, None)
            elif (old.get("metadata") or {}).get("resourceVersion") != (obj.get("metadata") or {}).get("resourceVersion"):
                self._emit("MODIFIED", obj, old)
        for key, old in previous.items():
            if key not in fresh:
                self._emit("DELETED", old, old)
        self.synced.set()
        return (body.get("metadata") or {}).get("resourceVersion") or ""

    def run(self) -> None:
        backoff = 0.1
        resource_version = ""
        while not self.stop_event.is_set():
            try:
                if not resource_version:
                    resource_version = self._relist()
                resource_version = self._watch(resource_version)
                backoff = 0.1
            except KubeError as exc:
                if exc.status == 410:
                    resource_version = ""
                    continue
                log.debug("informer %s: %s", self.name, exc)
                resource_version = ""
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:  # noqa: BLE001 - a broken stream (or one closed by stop())
                if self.stop_event.is_set():
                    break
                log.debug("informer %s: watch broke: %r", self.name, exc)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _watch(self, resource_version: str) -> str:
        query = dict(self.query, watch="true", resourceVersion=resource_version,
                     allowWatchBookmarks="true", timeoutSeconds=str(self.watch_timeout))
        response = self.kube.open_watch(self.path, query, self.watch_timeout + 10)
        self._response = response
        try:
            if self.stop_event.is_set():
                return resource_version
            for line in _lines(response):
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise KubeError(410, "Expired", obj.get("message", ""))
                    raise KubeError(int(obj.get("code") or 500), obj.get("reason", ""), obj.get("message", ""))
                if version:
                    resource_version = version
                if kind == "BOOKMARK":
                    continue
                key = obj_key(obj)
                with self._lock:
                    old = self._cache.get(key)
                    if kind == "DELETED":
                        self._cache.pop(key, None)
                    else:
                        self._cache[key] = obj
                if kind == "DELETED":
                    self._emit("DELETED", obj, old)
                else:
                    self._emit("ADDED" if old is None else "MODIFIED", obj, old)
                if self.stop_event.is_set():
                    break
        finally:
            self._response = None
            try:
                response.release_conn()
            except Exception:  # noqa: BLE001
                pass
        return resource_version



class Informers:
    """Shared informers by collection path, so controllers watch each collection once."""

    def __init__(self, kube: Kube, stop: threading.Event):
        self.kube = kube
        self.stop = stop
        self._by_path: dict[tuple[str, str], Informer] = {}

    def get(self, path: str, name: str, query: dict | None = None) -> Informer:
        key = (path, urllib.parse.urlencode(sorted((query or {}).items())))
        informer = self._by_path.get(key)
        if informer is None:
            informer = self._by_path[key] = Informer(self.kube, path, name=name, stop=self.stop, query=query)
        return informer

    def all(self) -> list[Informer]:
        return list(self._by_path.values())

    def start(self) -> None:
        for informer in self._by_path.values():
            informer.start()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for informer in self._by_path.values():
            if not informer.synced.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True
