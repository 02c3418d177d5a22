"""Garbage collection (light): dependents of a deleted ReplicaSet or Deployment are deleted.

Owns background propagation for the owner kinds kubelite's controllers
create: when an owner goes away, every object whose ownerReferences name its
uid is deleted.  A dependent seen whose owner is not in the cache is checked
against the API (by name and uid) before it is deleted, so a slow informer
never costs a live object.  Finished pods with no owner are left alone.
The API server already cascades deletes it performs itself; this covers
owners removed any other way and is idempotent with it.
"""

from __future__ import annotations

import logging
import threading

from .base import Worker
from .informers import Informers
from .kube import Kube, KubeError, obj_key

log = logging.getLogger(__name__)

# owner kind -> (API path prefix for one namespace, informer path)
OWNERS = {
    "Deployment": ("/apis/apps/v1/namespaces/{ns}/deployments", "/apis/apps/v1/deployments"),
    "ReplicaSet": ("/apis/apps/v1/namespaces/{ns}/replicasets", "/apis/apps/v1/replicasets"),
    "Job": ("/apis/batch/v1/namespaces/{ns}/jobs", "/apis/batch/v1/jobs"),
}
# dependent informer path -> API path prefix for one namespace
DEPENDENTS = {
    "/apis/apps/v1/replicasets": "/apis/apps/v1/namespaces/{ns}/replicasets",
    "/api/v1/pods": "/api/v1/namespaces/{ns}/pods",
}


class GarbageCollector(Worker):
    """One named worker thread; keys are `owner:<uid>:<ns>` or `orphan:<dependent path>:<key>`."""

    def __init__(self, kube: Kube, informers: Informers, stop: threading.Event):
        super().__init__("kubelite-gc", stop)
        self.kube = kube
        self.owners = {kind: informers.get(path, path.rsplit("/", 1)[-1]) for kind, (_, path) in OWNERS.items()}
        self.dependents = {path: informers.get(path, path.rsplit("/", 1)[-1]) for path in DEPENDENTS}
        for informer in self.owners.values():
            informer.add_handler(self._on_owner)
        for path, informer in self.dependents.items():
            informer.add_handler(lambda e, obj, old, path=path: self._on_dependent(path, e, obj))

    def _on_owner(self, event: str, obj: dict, old: dict | None) -> None:
        if event == "DELETED":
            meta = obj.get("metadata") or {}
            self.queue.add(f"owner:{meta.get('uid')}:{meta.get('namespace', '')}")

    def _on_dependent(self, path: str, event: str, obj: dict) -> None:
        if event != "ADDED":
            return
        refs = [r for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if r.get("kind") in OWNERS]
        if refs:
            self.queue.add(f"orphan:{path}:{obj_key(obj)}")

    what = "gc"
    retry_on = ()  # the next owner or dependent event brings the key back

    def handle(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "owner":
            uid, _, ns = rest.partition(":")
            self._delete_dependents(uid, ns)
        else:
            path, _, dep_key = rest.rpartition(":")
            self._check_orphan(path, dep_key)

    def _delete(self, path_prefix: str, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return
        url = path_prefix.format(ns=meta.get("namespace", "")) + "/" + meta["name"]
        try:
            self.kube.delete(url, propagationPolicy="Background",
                             preconditions={"uid": meta.get("uid")})
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise

    def _delete_dependents(self, uid: str, namespace: str) -> None:
        for path, informer in self.dependents.items():
            for obj in informer.items():
                meta = obj.get("metadata") or {}
                if meta.get("namespace", "") != namespace:
                    continue
                if any(r.get("uid") == uid for r in meta.get("ownerReferences") or []):
                    self._delete(DEPENDENTS[path], obj)

    def _owner_exists(self, ref: dict, namespace: str) -> bool:
        kind = ref.get("kind")
        informer = self.owners.get(kind)
        cached = informer.get(f"{namespace}/{ref.get('name')}") if informer else None
        if cached is not None and cached["metadata"].get("uid") == ref.get("uid"):
            return True
        try:
            live = self.kube.get(OWNERS[kind][0].format(ns=namespace) + "/" + ref.get("name", ""))
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return (live.get("metadata") or {}).get("uid") == ref.get("uid")

    def _check_orphan(self, path: str, key: str) -> None:
        informer = self.dependents.get(path)
        obj = informer.get(key) if informer else None
        if obj is None:
            return
        meta = obj.get("metadata") or {}
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("kind") in OWNERS]
        if not refs or len(refs) != len(meta.get("ownerReferences") or []):
            return  # owned (also) by something kubelite does not track
        namespace = meta.get("namespace", "")
        if not any(self._owner_exists(ref, namespace) for ref in refs):
            log.info("gc: deleting %s, its owner is gone", key)
            self._delete(DEPENDENTS[path], obj)
