"""Watch-backed caches: list once, then follow the watch; re-list when it breaks.

An :class:`Informer` keeps every object of one collection (narrowed by field or
label selectors) in memory and calls its handler for each change, so readers
never GET per object. One named thread per informer, not per object.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from vkcmd.backoff import Backoff
from vkcmd.kube.client import ApiError, KubeClient

log = logging.getLogger("vkcmd.kube.informer")

ADDED, MODIFIED, DELETED, SYNCED = "ADDED", "MODIFIED", "DELETED", "SYNCED"
Handler = Callable[[str, dict[str, Any] | None, dict[str, Any] | None], None]  # event, old, new


def object_key(obj: dict[str, Any]) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


class Informer:
    """A cache of one collection kept current by list+watch.

    ``handler(event, old, new)`` runs on the informer's thread for ADDED,
    MODIFIED and DELETED (after the cache changed), and once with SYNCED
    (``old`` and ``new`` None) after each full list, where objects that vanished
    while the watch was down are reported DELETED first. Handlers must be quick.
    """

    def __init__(self, client: KubeClient, resource_path: str, *, name: str,
                 handler: Handler | None = None, field_selector: str | None = None,
                 label_selector: str | None = None, watch_timeout: int = 300,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0) -> None:
        self._client = client
        self._path = resource_path
        self.name = name
        self._handler = handler
        self._selectors = {"fieldSelector": field_selector, "labelSelector": label_selector}
        self._watch_timeout = watch_timeout
        self._backoff = (backoff_initial, backoff_max)
        self._cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch_stream = None

    # --- reading ----------------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached object ``namespace/name`` (do not mutate it)."""
        with self._lock:
            return self._cache.get(key)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._cache.values())

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    # --- life -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        stream = self._watch_stream
        if stream is not None:
            stream.close()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = Backoff(*self._backoff, jitter=0.4)
        while not self._stop.is_set():
            try:
                version = self._relist()
                backoff.reset()
                self._follow(version)
            except ApiError as error:
                if self._stop.is_set():
                    break
                wait = backoff.next()
                log.warning("informer %s: %s; retrying in %.1fs", self.name, error, wait)
                self._stop.wait(wait)
            except Exception:
                wait = backoff.next()
                log.exception("informer %s failed; retrying in %.1fs", self.name, wait)
                self._stop.wait(wait)

    def _relist(self) -> str:
        answer = self._client.get(self._path, **self._selectors)
        fresh = {object_key(obj): obj for obj in answer.get("items") or []}
        kind = (answer.get("kind") or "").removesuffix("List")
        api_version = answer.get("apiVersion")
        for obj in fresh.values():  # list items come without kind/apiVersion
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", api_version)
        with self._lock:
            old = self._cache
            self._cache = fresh
        for key, gone in old.items():
            if key not in fresh:
                self._notify(DELETED, gone, None)
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._notify(ADDED, None, obj)
            elif _version(before) != _version(obj):
                self._notify(MODIFIED, before, obj)
        self._synced.set()
        self._notify(SYNCED, None, None)
        return answer.get("metadata", {}).get("resourceVersion", "")

    def _follow(self, version: str) -> None:
        while not self._stop.is_set():
            stream = self._client.watch(self._path, resource_version=version,
                                        timeout_seconds=self._watch_timeout, **self._selectors)
            self._watch_stream = stream
            try:
                for event in stream:
                    if self._stop.is_set():
                        return
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            log.info("informer %s: watch expired (410); re-listing", self.name)
                            return
                        raise ApiError(obj.get("code") or 500, obj.get("reason") or "Error",
                                       obj.get("message") or "watch error", obj)
                    version = _version(obj) or version
                    if kind == "BOOKMARK":
                        continue
                    self._apply(kind, obj)
            finally:
                self._watch_stream = None
                stream.close()

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        with self._lock:
            before = self._cache.get(key)
            if kind == DELETED:
                self._cache.pop(key, None)
            else:
                self._cache[key] = obj
        if kind == DELETED:
            self._notify(DELETED, before or obj, None)
        else:
            self._notify(ADDED if before is None else MODIFIED, before, obj)

    def _notify(self, event: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if self._handler is None:
            return
        try:
            self._handler(event, old, new)
        except Exception:
            log.exception("informer %s: handler failed on %s", self.name, event)


def _version(obj: dict[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("resourceVersion", "")
