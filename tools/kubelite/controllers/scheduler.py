"""The scheduler loop: binds pending pods to nodes, as kube-scheduler does.

Owns the queue of pods waiting for a node, the pods it has bound but not yet
seen bound ("assumed", so pod counts stay right between bind and watch
event), and the pods found unschedulable (retried when nodes change or a
pod leaves a node).  The choice itself is `tools.kubelite.scheduler.pick_node`.
Binding is a `pods/binding` create; success posts a `Scheduled` event, a
failure sets PodScheduled=False/Unschedulable and posts `FailedScheduling`,
both only when the message changed.
"""

from __future__ import annotations

import threading
from typing import Any

from ..scheduler import HostPort, host_ports, pick_node
from .events import EventRecorder
from .base import Worker
from .informers import Informers
from .kube import Kube, KubeError, STRATEGIC_PATCH, now_rfc3339, obj_key


SCHEDULER_NAME = "default-scheduler"
TERMINAL = ("Succeeded", "Failed")


def _node_signature(node: dict) -> tuple:
    """What about a node can change a scheduling decision."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    ready = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    return (repr(sorted((meta.get("labels") or {}).items())), repr(spec.get("taints")),
            bool(spec.get("unschedulable")), ready, repr((status.get("allocatable") or {}).get("pods")))


class SchedulerController(Worker):
    """Watches pods and nodes; one named worker thread binds."""

    def __init__(self, kube: Kube, informers: Informers, stop: threading.Event):
        super().__init__("kubelite-scheduler", stop)
        self.kube = kube
        self.pods = informers.get("/api/v1/pods", "pods")
        self.nodes = informers.get("/api/v1/nodes", "nodes")
        self.events = EventRecorder(kube, SCHEDULER_NAME, stop)
        self._lock = threading.Lock()
        self._assumed: dict[str, str] = {}          # pod key -> node name
        self._unschedulable: dict[str, str] = {}    # pod key -> last message
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)

    def start(self) -> None:
        self.events.start()
        super().start()

    def join(self, timeout: float) -> None:
        super().join(timeout)
        self.events.join(timeout)

    # -- handlers (informer threads: never block) -------------------------------

    @staticmethod
    def _wants_scheduling(pod: dict) -> bool:
        spec = pod.get("spec") or {}
        return (not spec.get("nodeName")
                and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
                and (pod.get("status") or {}).get("phase") not in TERMINAL
                and not (pod.get("metadata") or {}).get("deletionTimestamp"))

    def _on_pod(self, event: str, pod: dict, old: dict | None) -> None:
        key = obj_key(pod)
        if event != "DELETED" and self._wants_scheduling(pod):
            self.queue.add(key)
            return
        with self._lock:  # bound, finished or gone: no longer ours to place
            self._assumed.pop(key, None)
            self._unschedulable.pop(key, None)
        # a pod leaving a node frees room: retry the unschedulable ones
        was_bound = old is not None and (old.get("spec") or {}).get("nodeName") \
            and (old.get("status") or {}).get("phase") not in TERMINAL
        now_gone = event == "DELETED" or (pod.get("status") or {}).get("phase") in TERMINAL
        if was_bound and now_gone:
            self._retry_unschedulable()

    def _on_node(self, event: str, node: dict, old: dict | None) -> None:
        if event == "DELETED":
            return
        if old is None or _node_signature(old) != _node_signature(node):
            self._retry_unschedulable()

    def _retry_unschedulable(self) -> None:
        with self._lock:
            keys = list(self._unschedulable)
        for key in keys:
            self.queue.add(key)

    # -- worker ---------------------------------------------------------------------

    what = "scheduling"
    retry_on = (0, 429, 500, 503)  # a 409 on binding means bound by someone else

    def _node_usage(self) -> tuple[dict[str, int], dict[str, set[HostPort]]]:
        """Per node: the non-terminal pods bound (or assumed) to it, and the hostPorts they hold."""
        counts: dict[str, int] = {}
        ports: dict[str, set[HostPort]] = {}

        def add(pod: dict, node: str) -> None:
            counts[node] = counts.get(node, 0) + 1
            held = host_ports(pod)
            if held:
                ports.setdefault(node, set()).update(held)

        seen: set[str] = set()
        for pod in self.pods.items():
            node = (pod.get("spec") or {}).get("nodeName")
            if node and (pod.get("status") or {}).get("phase") not in TERMINAL:
                add(pod, node)
                seen.add(obj_key(pod))
        with self._lock:
            assumed = [(key, node) for key, node in self._assumed.items() if key not in seen]
        for key, node in assumed:
            add(self.pods.get(key) or {}, node)
        return counts, ports

    def handle(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or not self._wants_scheduling(pod):
            return
        with self._lock:
            if key in self._assumed:
                return
        node, message = pick_node(pod, self.nodes.items(), *self._node_usage())
        if node is None:
            self._unschedulable_pod(key, pod, message)
            return
        self._bind(key, pod, node)

    def _bind(self, key: str, pod: dict, node: str) -> None:
        meta = pod["metadata"]
        ns, name = meta.get("namespace", "default"), meta["name"]
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": meta.get("uid")},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        with self._lock:
            self._assumed[key] = node
        try:
            self.kube.create(f"/api/v1/namespaces/{ns}/pods/{name}/binding", body)
        except KubeError as exc:
            with self._lock:
                self._assumed.pop(key, None)
            if exc.status in (404, 409):  # gone, or bound by someone else
                return
            raise
        with self._lock:
            self._unschedulable.pop(key, None)
        self.events.event(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}")

    def _unschedulable_pod(self, key: str, pod: dict, message: str) -> None:
        with self._lock:
            changed = self._unschedulable.get(key) != message
            self._unschedulable[key] = message
        if not changed:
            return
        meta = pod["metadata"]
        ns, name = meta.get("namespace", "default"), meta["name"]
        condition: dict[str, Any] = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": message, "lastProbeTime": None}
        current = next((c for c in (pod.get("status") or {}).get("conditions") or []
                        if c.get("type") == "PodScheduled"), None)
        if current is None or current.get("status") != "False":
            condition["lastTransitionTime"] = now_rfc3339()
        elif current.get("message") == message and current.get("reason") == "Unschedulable":
            condition = {}
        if condition:
            try:
                self.kube.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status",
                                {"status": {"conditions": [condition]}}, STRATEGIC_PATCH)
            except KubeError as exc:
                if exc.status != 404:
                    raise
                return
        self.events.event(pod, "Warning", "FailedScheduling", message)
