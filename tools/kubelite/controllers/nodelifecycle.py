"""Node lifecycle: marks nodes whose lease expired, as kube-controller-manager's node lifecycle controller.

Owns the node health verdict.  A node whose Lease in `kube-node-lease` (or,
without a lease, whose Ready heartbeat) is older than `lease_grace` gets its
conditions set to Unknown (reason NodeStatusUnknown, "Kubelet stopped
posting node status.") and the `node.kubernetes.io/unreachable` NoSchedule
and NoExecute taints.  A renewed lease removes those taints (the kubelet
sets Ready itself).  A node reporting Ready=False carries the
`node.kubernetes.io/not-ready` taints while it does.  Checked on node and
lease events and on a timer of min(lease_grace/4, 5 s); no eviction.
"""

from __future__ import annotations

import logging
import threading
import time

from .base import Worker
from .informers import Informers
from .kube import Kube, KubeError, STRATEGIC_PATCH, now_rfc3339, parse_time

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
EFFECTS = ("NoSchedule", "NoExecute")
UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
_CHECK_ALL = "*"


class NodeLifecycleController(Worker):
    """One named worker thread; the queue's timeout is the timer."""

    def __init__(self, kube: Kube, informers: Informers, stop: threading.Event, *, lease_grace: float):
        super().__init__("kubelite-nodelifecycle", stop)
        self.kube = kube
        self.grace = lease_grace
        self.period = min(lease_grace / 4.0, 5.0)
        self.nodes = informers.get("/api/v1/nodes", "nodes")
        self.leases = informers.get(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases", "leases")
        self._next_sweep = time.monotonic() + self.period
        self.nodes.add_handler(lambda e, obj, old: self._enqueue(e, obj))
        self.leases.add_handler(lambda e, obj, old: self._enqueue(e, obj))

    def _enqueue(self, event: str, obj: dict) -> None:
        if event != "DELETED":
            self.queue.add((obj.get("metadata") or {}).get("name", ""))

    what = "node lifecycle"
    retry_on = ()  # the next sweep looks again

    def next_keys(self) -> list:
        key = self.queue.get(timeout=max(0.0, self._next_sweep - time.monotonic()))
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.period
            return [n["metadata"]["name"] for n in self.nodes.items()]
        return [key] if key else []

    # -- the verdict -----------------------------------------------------------------

    def _last_heartbeat(self, node: dict) -> float | None:
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{node['metadata']['name']}")
        if lease is not None:
            renewed = parse_time((lease.get("spec") or {}).get("renewTime"))
            if renewed is not None:
                return renewed
        ready = _condition(node, "Ready")
        beat = parse_time((ready or {}).get("lastHeartbeatTime"))
        return beat if beat is not None else parse_time(node["metadata"].get("creationTimestamp"))

    def handle(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            return
        beat = self._last_heartbeat(node)
        stale = beat is not None and time.time() - beat > self.grace
        ready = (_condition(node, "Ready") or {}).get("status")
        taints = list((node.get("spec") or {}).get("taints") or [])
        if stale and ready != "Unknown":
            node = self._mark_unknown(node)
            ready = "Unknown"
        if stale:
            wanted = UNREACHABLE
        elif ready == "False":
            wanted = NOT_READY
        else:
            wanted = None  # fresh lease: the kubelet owns Ready
        keep = [t for t in taints if t.get("key") not in (UNREACHABLE, NOT_READY)
                or (t.get("key") == wanted and t.get("effect") in EFFECTS)]
        if wanted:
            now = now_rfc3339()
            for effect in EFFECTS:
                if not any(t.get("key") == wanted and t.get("effect") == effect for t in keep):
                    keep.append({"key": wanted, "effect": effect, "timeAdded": now})
        if keep != taints:
            self._write_taints(node, keep)

    def _mark_unknown(self, node: dict) -> dict:
        now = now_rfc3339()
        conditions = []
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("status") == "Unknown":
                continue
            conditions.append({"type": cond.get("type"), "status": "Unknown", "reason": UNKNOWN_REASON,
                               "message": UNKNOWN_MESSAGE, "lastTransitionTime": now,
                               "lastHeartbeatTime": cond.get("lastHeartbeatTime")})
        if not any(c["type"] == "Ready" for c in conditions) and _condition(node, "Ready") is None:
            conditions.append({"type": "Ready", "status": "Unknown", "reason": UNKNOWN_REASON,
                               "message": UNKNOWN_MESSAGE, "lastTransitionTime": now})
        if not conditions:
            return node
        name = node["metadata"]["name"]
        updated = self.kube.patch(f"/api/v1/nodes/{name}/status", {"status": {"conditions": conditions}},
                                  STRATEGIC_PATCH)
        log.info("node %s: lease expired, conditions set to Unknown", name)
        return updated if updated.get("metadata") else node

    def _write_taints(self, node: dict, taints: list[dict]) -> None:
        name = node["metadata"]["name"]
        body = {"metadata": {"resourceVersion": node["metadata"].get("resourceVersion")},
                "spec": {"taints": taints or None}}
        try:
            self.kube.patch(f"/api/v1/nodes/{name}", body)
        except KubeError as exc:
            if exc.status == 409:  # the node changed under us: look again on its event
                return
            if exc.status != 404:
                raise


def _condition(node: dict, ctype: str) -> dict | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return None
