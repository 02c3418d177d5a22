"""Thread-safe in-memory object store with resourceVersions and watch fan-out.

Owns: objects keyed by (bucket, namespace, name), the one global monotonically
increasing resourceVersion, uid/creationTimestamp/generation bookkeeping,
optimistic-concurrency preconditions, and per-bucket event history plus
subscriber queues for watches. It knows nothing of HTTP, defaults, admission
or pod semantics.

Stored objects are *frozen by convention*: an :class:`Entry` holds the dict
and its JSON bytes, encoded once at write time; readers must not mutate the
dict (writers build a new one, e.g. from ``json.loads(entry.raw)``). Every
write takes one lock for a short commit; reads of one object take no lock and
lists copy only references. Watch events are encoded once and shared by all
watchers; each watcher is a queue drained by the thread serving it, so there
is no thread per watcher beyond the request's own, and nothing polls.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass

from . import errors

_GEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_CLOSED = object()


def rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def now_rfc3339(clock=time.time) -> str:
    return rfc3339(clock())


def encode(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored object version: the (frozen) dict, its JSON, its resourceVersion."""

    obj: dict
    raw: bytes
    rv: int


@dataclass(frozen=True, slots=True)
class Event:
    """A change of one object. ``line`` is the watch wire form, encoded once."""

    type: str  # ADDED / MODIFIED / DELETED
    rv: int
    namespace: str
    obj: dict
    old: dict | None
    raw: bytes
    line: bytes


def _event(etype: str, entry: Entry, namespace: str, old: dict | None) -> Event:
    line = b'{"type":"' + etype.encode() + b'","object":' + entry.raw + b"}\n"
    return Event(etype, entry.rv, namespace, entry.obj, old, entry.raw, line)


class Watcher:
    """A subscription to one bucket (optionally one namespace); drained by one thread."""

    def __init__(self, store: "Store", bucket: "_Bucket", namespace: str | None, max_backlog: int):
        self._store = store
        self._bucket = bucket
        self.namespace = namespace
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._max_backlog = max_backlog
        self.closed = False

    def _offer(self, ev: Event) -> bool:
        """Called under the store lock. False when the watcher is too far behind (it is then closed)."""
        if self.namespace is not None and ev.namespace != self.namespace:
            return True
        if self._q.qsize() >= self._max_backlog:
            self.closed = True
            self._q.put(_CLOSED)
            return False
        self._q.put(ev)
        return True

    def next(self, timeout: float) -> Event | None:
        """The next event; None on timeout. Raises EOFError once the watch is closed."""
        if self.closed and self._q.empty():
            raise EOFError
        try:
            item = self._q.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSED:
            self.closed = True
            raise EOFError
        return item

    def idle_rv(self) -> int | None:
        """The store's resourceVersion if nothing for us is queued (for a BOOKMARK), else None."""
        with self._store._lock:
            return self._store._rv if self._q.empty() else None

    def close(self) -> None:
        with self._store._lock:
            self._bucket.watchers.discard(self)
            if not self.closed:
                self.closed = True
                self._q.put(_CLOSED)


class _Bucket:
    __slots__ = ("objects", "history", "floor", "watchers")

    def __init__(self, history: int):
        self.objects: dict[tuple[str, str], Entry] = {}
        self.history: deque[Event] = deque(maxlen=history)
        self.floor = 0  # events with rv <= floor may have been evicted
        self.watchers: set[Watcher] = set()


def _spec_part(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


class Store:
    """The object store. ``history``: watch events kept per bucket (older → 410 Gone)."""

    def __init__(self, history: int = 10000, *, max_backlog: int = 100000, clock=time.time):
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._history = history
        self._max_backlog = max_backlog
        self._clock = clock
        self._rv = 1000
        self._closed = False
        self._listeners: dict[str, list] = {}

    def on_commit(self, key: str, fn) -> None:
        """Call ``fn(etype, obj, old)`` under the commit lock for every write to ``key``.

        For in-process indexes that must be exact at the moment a write returns (the Node
        authorizer's graph); ``fn`` must be quick and must not call back into the store.
        """
        with self._lock:
            self._listeners.setdefault(key, []).append(fn)

    # -- reads -------------------------------------------------------------
    def _bucket(self, key: str) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            with self._lock:
                b = self._buckets.setdefault(key, _Bucket(self._history))
        return b

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, key: str, namespace: str, name: str) -> Entry | None:
        return self._bucket(key).objects.get((namespace, name))

    def list(self, key: str, namespace: str | None = None) -> tuple[int, list[Entry]]:
        """The list's resourceVersion and entries (sorted by namespace, name, like etcd)."""
        b = self._bucket(key)
        with self._lock:
            rv = self._rv
            if namespace is None:
                items = list(b.objects.items())
            else:
                items = [(k, e) for k, e in b.objects.items() if k[0] == namespace]
        items.sort(key=lambda kv: kv[0])
        return rv, [e for _, e in items]

    def floor(self, key: str) -> int:
        """Events of ``key`` at or below this resourceVersion may be gone (the compaction point)."""
        return self._bucket(key).floor

    def revision(self, key: str) -> int:
        """The resourceVersion of the bucket's last change (0 when never written)."""
        h = self._bucket(key).history
        try:
            return h[-1].rv
        except IndexError:
            return 0

    def count(self, key: str, namespace: str | None = None) -> int:
        b = self._bucket(key)
        if namespace is None:
            return len(b.objects)
        with self._lock:
            return sum(1 for k in b.objects if k[0] == namespace)

    # -- writes ------------------------------------------------------------
    def _commit(self, b: _Bucket, etype: str, ns: str, name: str, obj: dict, old: dict | None,
                key: str = "") -> Entry:
        """Under the lock: stamp the next resourceVersion, encode, store, fan out."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        entry = Entry(obj, encode(obj), self._rv)
        if etype == "DELETED":
            b.objects.pop((ns, name), None)
        else:
            b.objects[(ns, name)] = entry
        ev = _event(etype, entry, ns, old)
        if len(b.history) == b.history.maxlen:
            b.floor = b.history[0].rv
        b.history.append(ev)
        if b.watchers:
            for w in [w for w in b.watchers if not w._offer(ev)]:
                b.watchers.discard(w)
        for fn in self._listeners.get(key, ()):
            fn(etype, obj, old)
        return entry

    def create(self, key: str, obj: dict, *, resource: str | None = None, group: str = "") -> Entry:
        """Store a new object (metadata.generateName honoured); the dict becomes the store's."""
        b = self._bucket(key)
        meta = obj.setdefault("metadata", {})
        ns = meta.get("namespace") or ""
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339(self._clock)
        if "spec" in obj:
            meta.setdefault("generation", 1)
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(k, None)
        with self._lock:
            name = meta.get("name")
            if not name:
                base = meta.get("generateName", "")
                for _ in range(100):
                    name = base + "".join(random.choice(_GEN_ALPHABET) for _ in range(5))
                    if (ns, name) not in b.objects:
                        break
                meta["name"] = name
            if (ns, name) in b.objects:
                raise errors.already_exists(resource or key, name, group)
            return self._commit(b, "ADDED", ns, name, obj, None, key)

    def replace(self, key: str, namespace: str, name: str, obj: dict, *, expect_rv: int | None = None,
                resource: str | None = None, group: str = "") -> Entry:
        """Replace an existing object.

        ``expect_rv``: the version the caller read (409 Conflict when stale). Server-owned
        metadata is kept from the stored object; generation is bumped on a spec change.
        """
        b = self._bucket(key)
        with self._lock:
            cur = self._current(b, key, namespace, name, expect_rv, resource, group)
            meta = obj.setdefault("metadata", {})
            old_meta = cur.obj["metadata"]
            meta["name"], meta["uid"] = name, old_meta["uid"]
            if namespace:
                meta["namespace"] = namespace
            meta["creationTimestamp"] = old_meta.get("creationTimestamp")
            if "generation" in old_meta:
                gen = old_meta["generation"]
                meta["generation"] = gen + 1 if _spec_part(obj) != _spec_part(cur.obj) else gen
            return self._commit(b, "MODIFIED", namespace, name, obj, cur.obj, key)

    @staticmethod
    def _current(b, key: str, namespace: str, name: str, expect_rv: int | None, resource: str | None,
                 group: str) -> Entry:
        """(lock held) The stored entry, checked: 404 when absent, 409 when ``expect_rv`` is stale."""
        cur = b.objects.get((namespace, name))
        if cur is None:
            raise errors.not_found(resource or key, name, group)
        if expect_rv is not None and cur.rv != expect_rv:
            raise errors.conflict(resource or key, name, errors.STALE, group)
        return cur

    def remove(self, key: str, namespace: str, name: str, *, expect_rv: int | None = None,
               final: dict | None = None, resource: str | None = None, group: str = "") -> Entry:
        """Delete now; the DELETED event carries the object (or ``final``) at a new resourceVersion."""
        b = self._bucket(key)
        with self._lock:
            cur = self._current(b, key, namespace, name, expect_rv, resource, group)
            obj = final if final is not None else json.loads(cur.raw)
            return self._commit(b, "DELETED", namespace, name, obj, cur.obj, key)

    # -- watch -------------------------------------------------------------
    def watch(self, key: str, namespace: str | None, since_rv: int | None) -> tuple[Watcher, list[Event]]:
        """Subscribe; return the watcher and the events to send first.

        ``since_rv`` None: synthetic ADDED events for the current objects, then changes.
        Otherwise the kept events after ``since_rv``; 410 Gone when some were evicted.
        """
        b = self._bucket(key)
        with self._lock:
            if self._closed:
                raise errors.ApiError(503, "ServiceUnavailable", "apiserver is shutting down")
            if since_rv is None:
                initial = [_event("ADDED", e, k[0], None) for k, e in sorted(b.objects.items())
                           if namespace is None or k[0] == namespace]
            else:
                if since_rv < b.floor:
                    raise errors.gone(f"too old resource version: {since_rv} ({b.floor + 1})")
                initial = [ev for ev in b.history
                           if ev.rv > since_rv and (namespace is None or ev.namespace == namespace)]
            w = Watcher(self, b, namespace, self._max_backlog)
            b.watchers.add(w)
        return w, initial

    def close(self) -> None:
        """End every watch (their threads see EOF) and refuse new ones."""
        with self._lock:
            self._closed = True
            for b in self._buckets.values():
                for w in b.watchers:
                    w.closed = True
                    w._q.put(_CLOSED)
                b.watchers.clear()


class StoreView:
    """Read-only access for policy code (admission, RBAC): returns stored dicts, which must not be mutated."""

    #: Set by the Api: the Node authorizer over this store's pods (policy code reads it).
    node_authorizer = None

    def __init__(self, store: Store):
        self._store = store

    def get(self, resource: str, namespace: str | None, name: str) -> dict | None:
        e = self._store.get(resource, namespace or "", name)
        return e.obj if e else None

    def list(self, resource: str, namespace: str | None = None) -> list[dict]:
        return [e.obj for e in self._store.list(resource, namespace)[1]]

    def revision(self, resource: str) -> int:
        """Changes whenever an object of ``resource`` changes (lets policy code cache)."""
        return self._store.revision(resource)
