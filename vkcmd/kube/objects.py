"""What this node's pods reference, read per object: ConfigMaps, Secrets (and tokens, via kube.tokens).

Never a cluster-wide list or watch (a node identity may read only what its pods
reference, and a cluster's Secrets are none of its business). Each referenced
object is fetched by GET in the background and kept in a TTL cache, reference-
counted by the pods bound to the node, refreshed every ``ttl`` by a few shared
workers over the client's connection pool (not a socket or thread per object).
Staging never waits: an object not fetched yet is "not yet" (the container waits
ContainerCreating) and ``on_change(kind, namespace, name)`` retries the pods
when it arrives, appears, changes or vanishes. Objects that are missing are
polled more often (back-off from 1 s to ``ttl``), so a pod waiting on a Secret
that does not exist yet starts soon after it is created.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vkcmd.backoff import PerKey
from vkcmd.kube.client import ApiError, KubeClient, path
from vkcmd.kube.tokens import TOKEN, TokenCache
from vkcmd.pods.errors import NOT_FOUND, config_error, not_yet
from vkcmd.workqueue import WorkQueue, run_workers

log = logging.getLogger("vkcmd.kube.objects")

ChangeHandler = Callable[[str, str, str], None]  # kind, namespace, name
Key = tuple[str, str, str]  # kind (ConfigMap/Secret), namespace, name
RESOURCES = {"ConfigMap": "configmaps", "Secret": "secrets"}
PENDING, PRESENT, ABSENT, FAILED = "pending", "present", "absent", "failed"


@dataclass
class _Entry:
    state: str = PENDING
    obj: dict[str, Any] | None = None
    error: str = ""
    fetched_at: float = 0.0
    used_at: float = 0.0
    refs: int = 0  # pods bound to the node that reference it


@dataclass
class _Pod:
    namespace: str
    keys: set[Key] = field(default_factory=set)


def pod_references(pod: dict[str, Any]) -> set[Key]:
    """The ConfigMaps and Secrets ``pod`` refers to: volumes (projected too), env and envFrom."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    namespace = meta.get("namespace") or "default"
    found: set[Key] = set()

    def add(kind: str, name: Any) -> None:
        if isinstance(name, str) and name:
            found.add((kind, namespace, name))

    for volume in spec.get("volumes") or []:
        add("ConfigMap", (volume.get("configMap") or {}).get("name"))
        add("Secret", (volume.get("secret") or {}).get("secretName"))
        for source in (volume.get("projected") or {}).get("sources") or []:
            add("ConfigMap", (source.get("configMap") or {}).get("name"))
            add("Secret", (source.get("secret") or {}).get("name"))
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for env in container.get("env") or []:
            value_from = env.get("valueFrom") or {}
            add("ConfigMap", (value_from.get("configMapKeyRef") or {}).get("name"))
            add("Secret", (value_from.get("secretKeyRef") or {}).get("name"))
        for source in container.get("envFrom") or []:
            add("ConfigMap", (source.get("configMapRef") or {}).get("name"))
            add("Secret", (source.get("secretRef") or {}).get("name"))
    return found


class ClusterObjects:
    """The staging :class:`~vkcmd.pods.Resolver` of a node: per-object reads and pod-bound tokens."""

    def __init__(self, client: KubeClient, *, on_change: ChangeHandler | None = None,
                 node_facts: Callable[[], dict[str, Any]] | None = None, ttl: float = 60.0,
                 fresh_for: float = 5.0, workers: int = 3, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._on_change = on_change or (lambda kind, namespace, name: None)
        self._node_facts = node_facts or dict
        self._ttl, self._fresh_for, self._workers = ttl, fresh_for, workers
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Key, _Entry] = {}
        self._pods: dict[str, _Pod] = {}  # uid -> what it references
        self._misses = PerKey(1.0, ttl)
        self._queue = WorkQueue("objects", clock=clock)
        self.tokens = TokenCache(client, self._queue, on_change=self._on_change, clock=wall_clock)
        self._threads: list[threading.Thread] = []
        self.fetches = 0

    def start(self) -> None:
        self._threads = run_workers(self._queue, self._process, self._workers)

    def stop(self) -> None:
        self._queue.shutdown()
        for thread in self._threads:
            thread.join(5)

    # --- which objects: the pods bound to the node ----------------------------------------

    def add_pod(self, pod: dict[str, Any]) -> None:
        """A pod bound to the node (new or changed): fetch what it references, ahead of its staging."""
        meta = pod.get("metadata") or {}
        uid, keys = meta.get("uid", ""), pod_references(pod)
        fetch = []
        with self._lock:
            old = self._pods.get(uid)
            self._pods[uid] = _Pod(meta.get("namespace") or "default", keys)
            for key in keys - (old.keys if old else set()):
                entry = self._entries.get(key)
                if entry is None:
                    entry = self._entries[key] = _Entry(used_at=self._clock())
                    fetch.append(key)
                entry.refs += 1
            for key in (old.keys if old else set()) - keys:
                self._release(key)
        for key in fetch:
            self._queue.add(key)

    def remove_pod(self, pod: dict[str, Any]) -> None:
        uid = (pod.get("metadata") or {}).get("uid", "")
        with self._lock:
            gone = self._pods.pop(uid, None)
            for key in gone.keys if gone else ():
                self._release(key)
        self.tokens.forget_pod(uid)

    def retain(self, uids: Iterable[str]) -> None:
        """After a full list of the node's pods: forget the pods that are no longer there."""
        alive = set(uids)
        with self._lock:
            stale = [uid for uid in self._pods if uid not in alive]
        for uid in stale:
            self.remove_pod({"metadata": {"uid": uid}})

    def _release(self, key: Key) -> None:  # (under the lock)
        entry = self._entries.get(key)
        if entry is not None:
            entry.refs -= 1
            if entry.refs <= 0:
                del self._entries[key]  # a refresh still queued for it finds nothing and stops

    def watched(self) -> int:
        """How many objects are kept (for tests and the benchmark)."""
        with self._lock:
            return len(self._entries)

    # --- the staging resolver -----------------------------------------------------------

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(("ConfigMap", namespace, name))

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(("Secret", namespace, name))

    def node_facts(self) -> dict[str, Any]:
        return self._node_facts()

    def service_account_token(self, namespace: str, service_account: str, audiences: list[str] | None,
                              expiration_seconds: int | None, pod: dict[str, Any] | None) -> str:
        return self.tokens.token(namespace, service_account, audiences, expiration_seconds, pod)

    def forget_pod(self, uid: str) -> None:
        self.tokens.forget_pod(uid)

    def _read(self, key: Key) -> dict[str, Any] | None:
        """The cached object (None: it does not exist); never blocks: not fetched yet is 'not yet'."""
        kind, namespace, name = key
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:  # no pod we know of references it (yet, or any more): fetch it all the same,
                entry = self._entries[key] = _Entry()  # and drop it once unused for a while
                state = None
            else:
                state = entry.state
            entry.used_at = now
            stale = state is not None and now - entry.fetched_at > self._fresh_for
            obj, error = entry.obj, entry.error
        if state is None or stale:
            self._queue.add(key)  # (a read of an old copy revalidates it in the background)
        if state is None or state == PENDING:
            raise not_yet(f"waiting for {kind.lower()} {namespace}/{name} to be read")
        if state == FAILED:
            raise config_error(error, NOT_FOUND)
        return obj

    # --- fetching (worker threads) ------------------------------------------------------

    def _process(self, key: Hashable) -> None:
        if key[0] == TOKEN:
            self.tokens.fetch(key)
        else:
            self._fetch(key)

    def _fetch(self, key: Key) -> None:
        kind, namespace, name = key
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.refs <= 0 and self._clock() - entry.used_at > 3 * self._ttl:
                del self._entries[key]
                entry = None
            if entry is None:
                return  # no pod references it any more
            before = (entry.state, _version(entry.obj))
        try:
            obj, state, error = self._client.get(path(resource=RESOURCES[kind], namespace=namespace, name=name)), \
                PRESENT, ""
        except ApiError as failure:
            obj, state = None, ABSENT if failure.not_found else FAILED
            error = "" if failure.not_found else f"cannot read {kind.lower()} {namespace}/{name}: {failure.message}"
        self.fetches += 1
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            if state == FAILED and entry.state == PRESENT:
                state, obj = PRESENT, entry.obj  # unreachable for a moment: keep the copy we have
            entry.state, entry.obj, entry.error, entry.fetched_at = state, obj, error, self._clock()
            after = (entry.state, _version(entry.obj))
        if state == PRESENT:
            self._misses.succeeded(str(key))
            self._queue.add_after(key, self._ttl)
        else:
            self._queue.add_after(key, self._misses.failed(str(key))[1])
        if after != before:
            self._on_change(kind, namespace, name)


def _version(obj: dict[str, Any] | None) -> str:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion", "")
