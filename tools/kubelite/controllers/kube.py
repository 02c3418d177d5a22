"""The controllers' one door to the API: raw-JSON requests, watches, shared informers, a work queue.

Owns every use of the `kubernetes` client by the controllers: an `ApiClient`
built from a kubeconfig (`kubernetes.config.new_client_from_config`), used
for its TLS and credentials only, with plain JSON in and out (no model
deserialization).  Client failures are turned into `KubeError` here.
`Informer` keeps a list+watch cache of one collection in a named thread and
tells handlers about changes; `WorkQueue` dedups keys for a worker thread.
Knows nothing of what the controllers decide.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import urllib3
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeError(Exception):
    """A failed API call: HTTP status (0 when the server was not reached), reason, message."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (with or without fraction)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def obj_key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta.get('name', '')}" if ns else meta.get("name", "")


class Kube:
    """Raw JSON calls over one `ApiClient` (thread-safe: urllib3 pools connections)."""

    def __init__(self, kubeconfig_path: str, *, timeout: float = 15.0):
        self.kubeconfig_path = kubeconfig_path
        self.api = kube_config.new_client_from_config(config_file=kubeconfig_path)
        self.timeout = timeout

    def close(self) -> None:
        self.api.close()

    def _send(self, method: str, path: str, query: dict | None, body: Any,
              content_type: str | None, timeout: Any):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        request = self.api.param_serialize(
            method, path, query_params=list((query or {}).items()) or None,
            header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            return self.api.call_api(*request, _request_timeout=timeout)
        except ApiException as exc:
            raise KubeError(exc.status or 0, exc.reason or "", str(exc.body or exc)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(0, "Unreachable", str(exc)) from None

    def request(self, method: str, path: str, *, query: dict | None = None, body: Any = None,
                content_type: str | None = None) -> dict:
        """One call; returns the decoded JSON body or raises `KubeError`."""
        response = self._send(method, path, query, body, content_type, self.timeout)
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(0, "Unreachable", str(exc)) from None
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"message": data[:200].decode(errors="replace")}
        if not 200 <= response.status <= 299:
            raise KubeError(response.status, decoded.get("reason", ""), decoded.get("message", ""))
        return decoded

    def get(self, path: str, **query: Any) -> dict:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> dict:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def delete(self, path: str, **options: Any) -> dict:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", **options} if options else None
        return self.request("DELETE", path, body=body)

    def open_watch(self, path: str, query: dict, timeout: float):
        """Start a watch; returns the streaming urllib3 response."""
        response = self._send("GET", path, query, None, None, (self.timeout, timeout))
        if not 200 <= response.status <= 299:
            data = response.read()
            try:
                decoded = json.loads(data)
            except ValueError:
                decoded = {}
            raise KubeError(response.status, decoded.get("reason", ""), decoded.get("message", ""))
        return response.response


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


class Informer:
    """A list+watch cache of one collection, kept by a named thread.

    Handlers are called from that thread as `handler(event, obj, old)` with
    event ADDED, MODIFIED or DELETED; they must not block (enqueue instead).
    After a watch failure the collection is re-listed and differences are
    reported as events, so a handler never misses a final state.
    """

    def __init__(self, kube: Kube, path: str, *, name: str, stop: threading.Event,
                 query: dict | None = None, watch_timeout: int = 60):
        self.kube = kube
        self.path = path
        self.name = name
        self.query = dict(query or {})
        self.watch_timeout = watch_timeout
        self._stop = stop
        self._lock = threading.Lock()
        self._cache: dict[str, dict] = {}
        self._handlers: list[Handler] = []
        self._response = None
        self.synced = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"kubelite-informer-{name}", daemon=True)

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Unblock the watch read; the thread sees the stop event and ends."""
        response = self._response
        if response is not None:
            for method in ("shutdown", "close"):
                try:
                    getattr(response, method)()
                except Exception:  # noqa: BLE001 - best effort while stopping
                    pass

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

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

    def _run(self) -> None:
        backoff = 0.1
        resource_version = ""
        while not self._stop.is_set():
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
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:  # noqa: BLE001 - a broken stream (or one closed by stop())
                if self._stop.is_set():
                    break
                log.debug("informer %s: watch broke: %r", self.name, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _watch(self, resource_version: str) -> str:
        query = dict(self.query, watch="true", resourceVersion=resource_version,
                     allowWatchBookmarks="true", timeoutSeconds=str(self.watch_timeout))
        response = self.kube.open_watch(self.path, query, self.watch_timeout + 10)
        self._response = response
        try:
            if self._stop.is_set():
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
                if self._stop.is_set():
                    break
        finally:
            self._response = None
            try:
                response.release_conn()
            except Exception:  # noqa: BLE001
                pass
        return resource_version


class WorkQueue:
    """Keys to process, each at most once in the queue; `get` blocks up to a timeout."""

    def __init__(self) -> None:
        self._queue: "queue.Queue[str]" = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self._queue.put(key)

    def get(self, timeout: float) -> str | None:
        try:
            key = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._lock:
            self._pending.discard(key)
        return key

    def wake(self) -> None:
        """Unblock a waiting `get` (used when stopping)."""
        self._queue.put("")


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
