"""The Node authorizer's graph: which objects a node may read because a pod bound to it uses them.

Owns, per node, the pods bound to it (``spec.nodeName``) and the Secrets,
ConfigMaps, PersistentVolumeClaims and ServiceAccounts those pods reference
(volumes, projected sources, env/envFrom, imagePullSecrets, the service
account), like kube-apiserver's graph populator. Kept exact by a store commit
hook, so a pod bound a moment ago already grants its node its references.
Knows nothing of HTTP or of who asks.
"""

from __future__ import annotations

import threading
from collections import Counter

POD, SECRET, CONFIGMAP, PVC, SERVICEACCOUNT = "pod", "secret", "configmap", "pvc", "serviceaccount"


def _env_refs(container: dict, out: set) -> None:
    for env in container.get("env") or []:
        src = (env or {}).get("valueFrom") or {}
        if (src.get("secretKeyRef") or {}).get("name"):
            out.add((SECRET, src["secretKeyRef"]["name"]))
        if (src.get("configMapKeyRef") or {}).get("name"):
            out.add((CONFIGMAP, src["configMapKeyRef"]["name"]))
    for src in container.get("envFrom") or []:
        if ((src or {}).get("secretRef") or {}).get("name"):
            out.add((SECRET, src["secretRef"]["name"]))
        if ((src or {}).get("configMapRef") or {}).get("name"):
            out.add((CONFIGMAP, src["configMapRef"]["name"]))


def _volume_refs(volume: dict, out: set) -> None:
    if (volume.get("secret") or {}).get("secretName"):
        out.add((SECRET, volume["secret"]["secretName"]))
    if (volume.get("configMap") or {}).get("name"):
        out.add((CONFIGMAP, volume["configMap"]["name"]))
    if (volume.get("persistentVolumeClaim") or {}).get("claimName"):
        out.add((PVC, volume["persistentVolumeClaim"]["claimName"]))
    for src in (volume.get("projected") or {}).get("sources") or []:
        if ((src or {}).get("secret") or {}).get("name"):
            out.add((SECRET, src["secret"]["name"]))
        if ((src or {}).get("configMap") or {}).get("name"):
            out.add((CONFIGMAP, src["configMap"]["name"]))
    for key in ("azureFile", "cephfs", "cinder", "flexVolume", "iscsi", "rbd", "scaleIO", "storageos", "csi"):
        ref = (volume.get(key) or {}).get("secretRef") or {}
        if ref.get("name"):
            out.add((SECRET, ref["name"]))
    if (volume.get("azureFile") or {}).get("secretName"):
        out.add((SECRET, volume["azureFile"]["secretName"]))


def pod_references(pod: dict) -> frozenset[tuple[str, str]]:
    """(type, name) of every namespaced object the pod's spec refers to, in the pod's namespace."""
    spec = pod.get("spec") or {}
    out: set = set()
    if spec.get("serviceAccountName"):
        out.add((SERVICEACCOUNT, spec["serviceAccountName"]))
    for ref in spec.get("imagePullSecrets") or []:
        if (ref or {}).get("name"):
            out.add((SECRET, ref["name"]))
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            _env_refs(c or {}, out)
    for v in spec.get("volumes") or []:
        _volume_refs(v or {}, out)
    return frozenset(out)


class NodeGraph:
    """Edges object -> node, counted (two pods on a node may share a Secret)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._edges: dict[tuple[str, str, str], Counter] = {}
        self._pods: dict[tuple[str, str], tuple[str, frozenset]] = {}  # (ns, name) -> (node, refs)

    def attach(self, store) -> "NodeGraph":
        """Follow the store's pods from now on (and index those already there)."""
        store.on_commit("pods", self.on_pod)
        for e in store.list("pods")[1]:
            self.on_pod("ADDED", e.obj, None)
        return self

    def on_pod(self, etype: str, obj: dict, old: dict | None) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        node = (obj.get("spec") or {}).get("nodeName") or ""
        with self._lock:
            prev = self._pods.get(key)
            if etype == "DELETED" or not node:
                if prev is not None:
                    self._unlink(key, *prev)
                    del self._pods[key]
                return
            if prev is not None and prev[0] == node and old is not None and old.get("spec") == obj.get("spec"):
                return  # a status or metadata write: the edges are unchanged
            refs = pod_references(obj)
            if prev == (node, refs):
                return
            if prev is not None:
                self._unlink(key, *prev)
            self._pods[key] = (node, refs)
            self._link(key, node, refs, +1)

    def _edge_keys(self, key, refs):
        ns, name = key
        yield (POD, ns, name)
        for kind, ref in refs:
            yield (kind, ns, ref)

    def _link(self, key, node: str, refs, delta: int) -> None:
        for edge in self._edge_keys(key, refs):
            counts = self._edges.setdefault(edge, Counter())
            counts[node] += delta
            if counts[node] <= 0:
                del counts[node]
                if not counts:
                    del self._edges[edge]

    def _unlink(self, key, node: str, refs) -> None:
        self._link(key, node, refs, -1)

    def has_path(self, node: str, kind: str, namespace: str, name: str) -> bool:
        """True when an object of ``kind`` ``namespace/name`` is used by a pod bound to ``node``."""
        counts = self._edges.get((kind, namespace, name))
        return bool(counts) and counts.get(node, 0) > 0

    def pod_node(self, namespace: str, name: str) -> str | None:
        entry = self._pods.get((namespace, name))
        return entry[0] if entry else None
