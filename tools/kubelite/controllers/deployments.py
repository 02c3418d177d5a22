"""Deployments and ReplicaSets, as kube-controller-manager runs them (simplified rollout).

Owns: Deployment -> ReplicaSet `<deployment>-<pod-template-hash>` (label
`pod-template-hash`, controller ownerReference) -> Pods (`generateName
<rs>-`, controller ownerReference); replica counts kept (missing or finished
pods replaced, extras deleted not-ready first); a new template makes a new
ReplicaSet scaled to the full count while older ones are scaled down as the
new one's pods become available; status (replicas, ready, available,
updated, observedGeneration, Available/Progressing) on both kinds.
`spec.replicas` is read at each pass, so scale-subresource writes (the HPA)
take effect like any other change.  "Expectations" remember creates and
deletes not yet seen by the informer, so nothing is done twice.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field

from .base import Worker
from .informers import Informers
from .kube import Kube, KubeError, now_rfc3339, obj_key


TERMINAL = ("Succeeded", "Failed")
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_EXPECTATION_TTL = 30.0


def template_hash(template: dict) -> str:
    """A stable, name-safe hash of a pod template (FNV-1a over canonical JSON)."""
    value = 0x811C9DC5
    for byte in json.dumps(template, sort_keys=True, separators=(",", ":")).encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(ch) % len(_SAFE)] for ch in str(value))


def controller_of(obj: dict) -> dict | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def _is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _active(pod: dict) -> bool:
    return (not (pod.get("metadata") or {}).get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in TERMINAL)


def _pod_view(pod: dict | None) -> tuple:
    if pod is None:
        return ()
    meta = pod.get("metadata") or {}
    return ((pod.get("status") or {}).get("phase"), _is_ready(pod), bool(meta.get("deletionTimestamp")),
            (pod.get("spec") or {}).get("nodeName"), repr(meta.get("ownerReferences")))


def _scaled(value, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        fraction = int(value[:-1] or 0) * total / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(value or 0)


@dataclass
class _Expectations:
    created: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    since: float = field(default_factory=time.monotonic)


def _condition(existing: list[dict], ctype: str, status: str, reason: str, message: str) -> dict:
    now = now_rfc3339()
    old = next((c for c in existing if c.get("type") == ctype), None)
    cond = {"type": ctype, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}
    if old is not None:
        if old.get("status") == status:
            cond["lastTransitionTime"] = old.get("lastTransitionTime", now)
        if (old.get("status"), old.get("reason"), old.get("message")) == (status, reason, message):
            cond["lastUpdateTime"] = old.get("lastUpdateTime", now)
    return cond


def _without_times(status: dict) -> dict:
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if not k.endswith("Time")}
                         for c in status.get("conditions") or []]
    return out


class DeploymentController(Worker):
    """One named worker thread syncing Deployments ("d:" keys) and ReplicaSets ("rs:" keys)."""

    def __init__(self, kube: Kube, informers: Informers, stop: threading.Event):
        super().__init__("kubelite-deployments", stop)
        self.kube = kube
        self.deployments = informers.get("/apis/apps/v1/deployments", "deployments")
        self.replicasets = informers.get("/apis/apps/v1/replicasets", "replicasets")
        self.pods = informers.get("/api/v1/pods", "pods")
        self._lock = threading.Lock()
        self._pods_by_owner: dict[str, set[str]] = {}
        self._expect: dict[str, _Expectations] = {}
        self._new_rs: dict[str, tuple[str, float]] = {}  # deployment key -> (rs name, created at)
        self.deployments.add_handler(self._on_deployment)
        self.replicasets.add_handler(self._on_replicaset)
        self.pods.add_handler(self._on_pod)

    # -- handlers ----------------------------------------------------------------

    def _on_deployment(self, event: str, obj: dict, old: dict | None) -> None:
        self.queue.add("d:" + obj_key(obj))

    def _on_replicaset(self, event: str, obj: dict, old: dict | None) -> None:
        self.queue.add("rs:" + obj_key(obj))
        owner = controller_of(obj)
        if owner and owner.get("kind") == "Deployment":
            ns = (obj.get("metadata") or {}).get("namespace", "")
            self.queue.add(f"d:{ns}/{owner.get('name')}")

    def _on_pod(self, event: str, pod: dict, old: dict | None) -> None:
        owner = controller_of(pod)
        old_owner = controller_of(old) if old else None
        key = obj_key(pod)
        with self._lock:
            if old_owner and (not owner or old_owner.get("uid") != owner.get("uid")):
                self._pods_by_owner.get(old_owner.get("uid"), set()).discard(key)
            if owner:
                bucket = self._pods_by_owner.setdefault(owner.get("uid"), set())
                if event == "DELETED":
                    bucket.discard(key)
                else:
                    bucket.add(key)
        if event == "MODIFIED" and _pod_view(pod) == _pod_view(old):
            return
        for ref in (owner, old_owner):
            if ref and ref.get("kind") == "ReplicaSet":
                ns = (pod.get("metadata") or {}).get("namespace", "")
                self.queue.add(f"rs:{ns}/{ref.get('name')}")

    # -- worker --------------------------------------------------------------------

    def handle(self, key: str) -> None:
        kind, _, name = key.partition(":")
        if kind == "d":
            self._sync_deployment(name)
        else:
            self._sync_replicaset(name)

    # -- deployments -----------------------------------------------------------------

    def _sync_deployment(self, key: str) -> None:
        dep = self.deployments.get(key)
        if dep is None or dep["metadata"].get("deletionTimestamp"):
            self._new_rs.pop(key, None)
            return
        meta, spec = dep["metadata"], dep.get("spec") or {}
        uid = meta.get("uid")
        desired = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        digest = template_hash(template)
        owned = [rs for rs in self.replicasets.items()
                 if (controller_of(rs) or {}).get("uid") == uid]
        new = next((rs for rs in owned if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == digest), None)
        if new is None:
            pending = self._new_rs.get(key)
            if pending and pending[0] == f"{meta['name']}-{digest}" and time.monotonic() - pending[1] < _EXPECTATION_TTL:
                return  # created, not yet seen
            self._create_replicaset(dep, digest, desired, owned)
            return
        self._new_rs.pop(key, None)
        self._scale(new, desired)
        new_available = int((new.get("status") or {}).get("availableReplicas") or 0)
        remaining = max(0, desired - new_available)
        olds = sorted((rs for rs in owned if rs is not new),
                      key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(REVISION, "0")),
                      reverse=True)
        for rs in olds:
            current = int((rs.get("spec") or {}).get("replicas") or 0)
            want = min(current, remaining)
            remaining -= want
            self._scale(rs, want)
        self._deployment_status(dep, new, owned, desired)

    def _create_replicaset(self, dep: dict, digest: str, desired: int, owned: list[dict]) -> None:
        meta, spec = dep["metadata"], dep.get("spec") or {}
        ns, name = meta.get("namespace", "default"), f"{meta['name']}-{digest}"
        template = json.loads(json.dumps(spec.get("template") or {}))
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = dict(tmeta.get("labels") or {}, **{HASH_LABEL: digest})
        selector = json.loads(json.dumps(spec.get("selector") or {}))
        selector["matchLabels"] = dict(selector.get("matchLabels") or {}, **{HASH_LABEL: digest})
        revision = 1 + max((int((rs["metadata"].get("annotations") or {}).get(REVISION, "0")) for rs in owned),
                           default=0)
        surge = _scaled(((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge", "25%"),
                        desired, True)
        body = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": name, "namespace": ns, "labels": dict(tmeta["labels"]),
                "annotations": {"deployment.kubernetes.io/desired-replicas": str(desired),
                                "deployment.kubernetes.io/max-replicas": str(desired + surge),
                                REVISION: str(revision)},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                                     "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": {"replicas": desired, "minReadySeconds": spec.get("minReadySeconds", 0),
                     "selector": selector, "template": template},
        }
        try:
            self.kube.create(f"/apis/apps/v1/namespaces/{ns}/replicasets", body)
        except KubeError as exc:
            if exc.status != 409:
                raise
        self._new_rs[obj_key(dep)] = (name, time.monotonic())
        status = dict(dep.get("status") or {})
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "Progressing"]
        status["conditions"].append(_condition((dep.get("status") or {}).get("conditions") or [], "Progressing",
                                               "True", "NewReplicaSetCreated",
                                               f'Created new replica set "{name}"'))
        self._write_status(f"/apis/apps/v1/namespaces/{ns}/deployments/{meta['name']}/status",
                           dep.get("status") or {}, status)

    def _scale(self, rs: dict, replicas: int) -> None:
        if int((rs.get("spec") or {}).get("replicas") or 0) == replicas:
            return
        meta = rs["metadata"]
        self.kube.patch(f"/apis/apps/v1/namespaces/{meta.get('namespace')}/replicasets/{meta['name']}",
                        {"spec": {"replicas": replicas}})

    def _deployment_status(self, dep: dict, new: dict, owned: list[dict], desired: int) -> None:
        meta, spec = dep["metadata"], dep.get("spec") or {}

        def total(field_name: str, sets: list[dict]) -> int:
            return sum(int((rs.get("status") or {}).get(field_name) or 0) for rs in sets)

        replicas = total("replicas", owned)
        available = total("availableReplicas", owned)
        updated = int((new.get("status") or {}).get("replicas") or 0)
        new_available = int((new.get("status") or {}).get("availableReplicas") or 0)
        max_unavailable = _scaled(((spec.get("strategy") or {}).get("rollingUpdate") or {})
                                  .get("maxUnavailable", "25%"), desired, False)
        old_conditions = (dep.get("status") or {}).get("conditions") or []
        if available >= desired - max_unavailable:
            available_cond = _condition(old_conditions, "Available", "True", "MinimumReplicasAvailable",
                                        "Deployment has minimum availability.")
        else:
            available_cond = _condition(old_conditions, "Available", "False", "MinimumReplicasUnavailable",
                                        "Deployment does not have minimum availability.")
        rs_name = new["metadata"]["name"]
        if updated == desired and new_available == desired and replicas == desired:
            progressing = _condition(old_conditions, "Progressing", "True", "NewReplicaSetAvailable",
                                     f'ReplicaSet "{rs_name}" has successfully progressed.')
        else:
            progressing = _condition(old_conditions, "Progressing", "True", "ReplicaSetUpdated",
                                     f'ReplicaSet "{rs_name}" is progressing.')
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": total("readyReplicas", owned),
            "availableReplicas": available,
            "unavailableReplicas": max(0, desired - available),
            "conditions": [available_cond, progressing],
        }
        status = {k: v for k, v in status.items() if v != 0 or k in ("observedGeneration", "replicas")}
        self._write_status(f"/apis/apps/v1/namespaces/{meta.get('namespace')}/deployments/{meta['name']}/status",
                           dep.get("status") or {}, status)

    def _write_status(self, path: str, current: dict, status: dict) -> None:
        if _without_times(current) == _without_times(status):
            return
        # merge patch: null removes counters that dropped to zero
        body = {k: None for k in current if k not in status}
        body.update(status)
        try:
            self.kube.patch(path, {"status": body})
        except KubeError as exc:
            if exc.status != 404:
                raise

    # -- replicasets ------------------------------------------------------------------

    def _sync_replicaset(self, key: str) -> None:
        rs = self.replicasets.get(key)
        if rs is None:
            self._expect.pop(key, None)
            return
        meta, spec = rs["metadata"], rs.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        ns, uid = meta.get("namespace", "default"), meta.get("uid")
        with self._lock:
            keys = list(self._pods_by_owner.get(uid, ()))
        pods = [p for p in (self.pods.get(k) for k in keys) if p is not None
                and (controller_of(p) or {}).get("uid") == uid]
        present = {p["metadata"]["name"] for p in pods}
        active = [p for p in pods if _active(p)]
        exp = self._expect.setdefault(key, _Expectations())
        if time.monotonic() - exp.since > _EXPECTATION_TTL:
            exp.created.clear()
            exp.deleted.clear()
        exp.created -= present
        exp.deleted &= present
        effective = len(active) + len(exp.created) - len(exp.deleted & {p["metadata"]["name"] for p in active})
        desired = int(spec.get("replicas", 1))
        if desired > effective:
            exp.since = time.monotonic()
            for _ in range(desired - effective):
                if self.stop_event.is_set():
                    return
                exp.created.add(self._create_pod(rs))
        elif desired < effective:
            exp.since = time.monotonic()
            candidates = [p for p in active if p["metadata"]["name"] not in exp.deleted]
            candidates.sort(key=_deletion_rank)
            for pod in candidates[:effective - desired]:
                name = pod["metadata"]["name"]
                try:
                    self.kube.delete(f"/api/v1/namespaces/{ns}/pods/{name}")
                except KubeError as exc:
                    if exc.status != 404:
                        raise
                exp.deleted.add(name)
        ready = sum(1 for p in active if _is_ready(p))
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(1 for p in active if all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": meta.get("generation", 1),
        }
        status = {k: v for k, v in status.items() if v != 0 or k in ("replicas", "observedGeneration")}
        self._write_status(f"/apis/apps/v1/namespaces/{ns}/replicasets/{meta['name']}/status",
                           rs.get("status") or {}, status)

    def _create_pod(self, rs: dict) -> str:
        meta, spec = rs["metadata"], rs.get("spec") or {}
        template = spec.get("template") or {}
        tmeta = template.get("metadata") or {}
        pod_meta = {"generateName": f"{meta['name']}-", "namespace": meta.get("namespace"),
                    "labels": dict(tmeta.get("labels") or {}),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": meta["name"],
                                         "uid": meta.get("uid"), "controller": True,
                                         "blockOwnerDeletion": True}]}
        if tmeta.get("annotations"):
            pod_meta["annotations"] = dict(tmeta["annotations"])
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template.get("spec") or {}}
        created = self.kube.create(f"/api/v1/namespaces/{meta.get('namespace')}/pods", body)
        return (created.get("metadata") or {}).get("name", "")


def _deletion_rank(pod: dict) -> tuple:
    """Pods to delete first: unscheduled, then pending, then not ready, then the newest."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    created = (pod.get("metadata") or {}).get("creationTimestamp") or ""
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase"), 0)
    return (bool(spec.get("nodeName")), phase_rank, _is_ready(pod), _neg(created))


def _neg(text: str) -> tuple:
    return tuple(-ord(ch) for ch in text)
