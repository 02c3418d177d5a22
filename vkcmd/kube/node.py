"""The Node: registration, Lease heartbeat, status, walltime, drain — driven by the node machine.

One heartbeat thread renews the Lease, rewrites the node status when it changes
(or at least every status interval), counts ``jiriaf.alivetime`` down and asks
for a drain a margin before the walltime ends. A watch on the Node object
re-creates it if someone deletes it. Draining itself runs on the caller's
thread (the app's main loop), through the :class:`PodLifecycle` hook.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from fsm import Machine
from vkcmd import __version__
from vkcmd.kube.client import MERGE_PATCH, ApiError, KubeClient, path
from vkcmd.kube.informer import DELETED, MODIFIED, Informer
from vkcmd.timefmt import micro_time, rfc3339
from vkcmd.machines import NODE, NodeEvent, NodeState

log = logging.getLogger("vkcmd.kube.node")

PROVIDER_TAINT = "virtual-kubelet.io/provider"
DRAIN_TAINT = "vkcmd.jiriaf.io/draining"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
DRAIN_ANNOTATION = "vkcmd.jiriaf.io/drain"  # an operator sets it (any value = reason) to drain the node
LEASE_NAMESPACE = "kube-node-lease"


class HostFacts(Protocol):
    """Facts about the host the node reports (read by the runtime side, handed in by the app)."""

    hostname: str
    cpus: int
    memory_bytes: int
    os: str
    arch: str
    kernel: str
    os_image: str
    machine_id: str
    boot_id: str


class PodLifecycle(Protocol):
    """What the node needs from the pod side (implemented by the pod controller)."""

    def drain(self, reason: str, message: str, fast: bool) -> None:
        """Terminate every pod with its grace period (none when ``fast``); final status Failed/reason."""

    def hurry(self) -> None:
        """Skip the remaining grace periods of a drain in progress."""

    def wait_drained(self, timeout: float) -> bool:
        """True once every pod's processes are gone and final statuses written."""

    def max_grace_period(self) -> float:
        """The longest termination grace period among the node's pods."""


@dataclass(frozen=True)
class NodeConfig:
    name: str
    pod_ip: str
    kubelet_port: int
    provider: str = "mock"
    node_type: str = ""
    site: str = ""
    walltime: int = 0
    max_pods: int = 1000
    cpu: str | None = None
    memory: str | None = None
    lease_duration: int = 40
    lease_renew_interval: float = 10.0
    status_interval: float = 300.0
    alivetime_interval: float = 60.0
    drain_margin: float = 60.0
    delete_on_exit: bool = False


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def _strip_times(conditions: Iterable[dict[str, Any]]) -> list[tuple]:
    return sorted((c["type"], c["status"], c.get("reason"), c.get("message")) for c in conditions)


class NodeController:
    """Owns the Node object and its Lease for the life of the process."""

    def __init__(self, client: KubeClient, config: NodeConfig, facts: HostFacts, pods: PodLifecycle, *,
                 observers: Iterable[Callable] = (), clock: Callable[[], float] = time.time,
                 on_drain_request: Callable[[str, str], None] | None = None) -> None:
        self._client = client
        self.config = config
        self._facts = facts
        self._pods = pods
        self._clock = clock
        self._on_drain_request = on_drain_request or (lambda reason, message: None)
        self.machine: Machine = NODE.new(config.name, observers=observers)
        self.started_at = clock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ready_condition = _condition("Ready", "True", "KubeletReady", "vkcmd is posting ready status")
        self._written_conditions: list[tuple] | None = None
        self._status_written_at = 0.0
        self._alivetime_written: int | None = None
        self._lease: dict[str, Any] | None = None
        self._previous_conditions: dict[str, dict[str, Any]] = {}
        self._recreate = False
        self._drain_asked = False
        self._thread: threading.Thread | None = None
        self._informer = Informer(client, path(resource="nodes"), name="node",
                                  field_selector=f"metadata.name={config.name}", handler=self._on_node_event)

    # --- public -------------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        """Wall-clock time at which the walltime ends (None: unlimited)."""
        return self.started_at + self.config.walltime if self.config.walltime > 0 else None

    def alivetime(self) -> int | None:
        deadline = self.deadline
        return None if deadline is None else max(0, int(deadline - self._clock()))

    def start(self) -> None:
        """Register (retrying until the API answers or stop), then start the heartbeat."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._register()
                break
            except ApiError as error:
                log.warning("registration of node %s failed: %s; retrying in %.1fs", self.config.name, error, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
        if self._stop.is_set():
            return
        self.machine.fire(NodeEvent.REGISTERED, reason="node and lease written")
        self._informer.start()
        self._thread = threading.Thread(target=self._heartbeat, name="node-heartbeat", daemon=True)
        self._thread.start()

    def drain(self, reason: str, message: str, fast: bool = False) -> None:
        """Ready/Registering → Draining → Expired: cordon, terminate every pod, stop the lease."""
        if self.machine.fire_if_allowed(NodeEvent.DRAIN, reason=reason) is None:
            return
        self._cordon(reason, message)
        self._pods.drain(reason, message, fast)
        while not self._pods.wait_drained(timeout=1.0):
            pass
        self.machine.fire(NodeEvent.DRAINED, reason=reason)

    def hurry(self) -> None:
        """A second signal while draining: no more grace."""
        self._pods.hurry()

    def stop(self) -> None:
        """Stop the heartbeat (the lease is no longer renewed); delete the Node if configured."""
        self._stop.set()
        self._wake.set()
        self._informer.stop()
        if self._thread is not None:
            self._thread.join(10)
        if self.config.delete_on_exit:
            try:
                self._client.delete(path(resource="nodes", name=self.config.name))
                log.info("node %s deleted on exit", self.config.name)
            except ApiError as error:
                log.warning("could not delete node %s on exit: %s", self.config.name, error)

    # --- the object ---------------------------------------------------------------------

    def labels(self) -> dict[str, str]:
        c, f = self.config, self._facts
        labels = {
            "type": "virtual-kubelet",
            "kubernetes.io/role": "agent",
            "kubernetes.io/hostname": c.name,
            "kubernetes.io/os": f.os,
            "kubernetes.io/arch": f.arch,
            "beta.kubernetes.io/os": f.os,
            "beta.kubernetes.io/arch": f.arch,
            "jiriaf.nodetype": c.node_type,
            "jiriaf.site": c.site,
        }
        if c.walltime > 0:
            labels["jiriaf.walltime"] = str(c.walltime)
            labels["jiriaf.alivetime"] = str(self.alivetime())
        return labels

    def _taints(self) -> list[dict[str, str]]:
        return [{"key": PROVIDER_TAINT, "value": self.config.provider, "effect": "NoSchedule"}]

    def _capacity(self) -> dict[str, str]:
        c, f = self.config, self._facts
        return {"cpu": c.cpu or str(f.cpus), "memory": c.memory or f"{f.memory_bytes // 1024}Ki",
                "pods": str(c.max_pods), "ephemeral-storage": "0"}

    def _conditions(self) -> list[dict[str, str]]:
        with self._lock:
            ready = dict(self._ready_condition)
        return [
            ready,
            _condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "vkcmd has sufficient memory available"),
            _condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "vkcmd has no disk pressure"),
            _condition("PIDPressure", "False", "KubeletHasSufficientPID", "vkcmd has sufficient PID available"),
        ]

    def _status(self, now: float) -> dict[str, Any]:
        c, f = self.config, self._facts
        stamp = rfc3339(now)
        conditions = []
        for condition in self._conditions():
            condition.update(lastHeartbeatTime=stamp, lastTransitionTime=self._transition_time(condition, stamp))
            conditions.append(condition)
        return {
            "capacity": self._capacity(),
            "allocatable": self._capacity(),
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": c.pod_ip}, {"type": "Hostname", "address": f.hostname}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": c.kubelet_port}},
            "nodeInfo": {
                "machineID": f.machine_id, "systemUUID": f.machine_id, "bootID": f.boot_id,
                "kernelVersion": f.kernel, "osImage": f.os_image, "operatingSystem": f.os,
                "architecture": f.arch, "containerRuntimeVersion": f"vkcmd://{__version__}",
                "kubeletVersion": f"v1.30.0-vkcmd-{__version__}", "kubeProxyVersion": "",
            },
        }

    def _transition_time(self, condition: dict[str, str], now_stamp: str) -> str:
        previous = self._previous_conditions.get(condition["type"])
        if previous and previous.get("status") == condition["status"] and previous.get("lastTransitionTime"):
            return previous["lastTransitionTime"]
        return now_stamp

    # --- registration ---------------------------------------------------------------------

    def _register(self) -> None:
        name = self.config.name
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": self.labels()},
                "spec": {"taints": self._taints()}}
        try:
            created = self._client.create(path(resource="nodes"), body)
            log.info("node %s created", name)
        except ApiError as error:
            if not error.already_exists:
                raise
            created = self._adopt()
        self._previous_conditions = {c["type"]: c for c in (created.get("status") or {}).get("conditions") or []}
        self._write_status(force=True)
        self._renew_lease(created)

    def _adopt(self) -> dict[str, Any]:
        """Take over an existing Node of our name, keeping what operators added."""
        name = self.config.name
        for _ in range(5):
            existing = self._client.get(path(resource="nodes", name=name))
            updated = copy.deepcopy(existing)
            meta = updated.setdefault("metadata", {})
            labels = meta.setdefault("labels", {})
            labels.update(self.labels())
            if self.config.walltime <= 0:
                labels.pop("jiriaf.walltime", None)
                labels.pop("jiriaf.alivetime", None)
            (meta.get("annotations") or {}).pop(DRAIN_ANNOTATION, None)
            spec = updated.setdefault("spec", {})
            spec.pop("unschedulable", None)
            ours = {t["key"] for t in self._taints()} | {DRAIN_TAINT, UNSCHEDULABLE_TAINT}
            spec["taints"] = [t for t in spec.get("taints") or [] if t.get("key") not in ours] + self._taints()
            try:
                adopted = self._client.replace(path(resource="nodes", name=name), updated)
                log.info("node %s existed; adopted", name)
                return adopted
            except ApiError as error:
                if not error.conflict:
                    raise
        raise ApiError(409, "Conflict", f"node {name} kept changing while being adopted")

    # --- heartbeat ----------------------------------------------------------------------

    def _heartbeat(self) -> None:
        next_lease = self._clock() + self.config.lease_renew_interval
        failures = 0
        while not self._stop.is_set():
            now = self._clock()
            try:
                if self._recreate:
                    log.warning("node %s was deleted; re-creating it", self.config.name)
                    self._register()
                    self._recreate = False
                    next_lease = now + self.config.lease_renew_interval
                if now >= next_lease:
                    self._renew_lease()
                    next_lease = now + self.config.lease_renew_interval
                self._write_status()
                self._update_alivetime(now)
            except ApiError as error:
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    log.warning("node heartbeat failed (%d in a row): %s", failures, error)
                next_lease = now + min(2.0, self.config.lease_renew_interval)
            else:
                if failures:
                    log.info("node heartbeat works again after %d failure(s)", failures)
                failures = 0
            self._check_walltime(now)  # needs no API: the walltime ends whether or not it answers
            self._wake.wait(max(0.05, min(next_lease, self._next_alivetime(now)) - self._clock()))
            self._wake.clear()

    def _next_alivetime(self, now: float) -> float:
        deadline = self.deadline
        if deadline is None:
            return float("inf")
        drain_at = deadline - self._drain_lead()
        step = self.config.alivetime_interval
        next_tick = self.started_at + step * (int((now - self.started_at) / step) + 1)
        # next_tick is always after now; the deadline and the drain time count only while ahead
        return min(t for t in (next_tick, deadline, drain_at) if t > now)

    def _drain_lead(self) -> float:
        return max(self.config.drain_margin, self._pods.max_grace_period())

    def _check_walltime(self, now: float) -> None:
        deadline = self.deadline
        if deadline is None or self._drain_asked or self.machine.state is not NodeState.READY:
            return
        if now >= deadline - self._drain_lead():
            self._drain_asked = True
            self._on_drain_request("WalltimeExpired",
                                   f"walltime of {self.config.walltime}s ends in {max(0, int(deadline - now))}s")

    def _update_alivetime(self, now: float) -> None:
        alive = self.alivetime()
        if alive is None or alive == self._alivetime_written:
            return
        due = self._alivetime_written is None or alive == 0 or \
            self._alivetime_written - alive >= self.config.alivetime_interval
        if not due:
            return
        self._client.patch(path(resource="nodes", name=self.config.name),
                           {"metadata": {"labels": {"jiriaf.alivetime": str(alive)}}}, MERGE_PATCH)
        self._alivetime_written = alive

    def _write_status(self, force: bool = False) -> None:
        now = self._clock()
        status = self._status(now)
        signature = _strip_times(status["conditions"])
        if not force and signature == self._written_conditions and \
                now - self._status_written_at < self.config.status_interval:
            return
        written = self._client.patch(path(resource="nodes", name=self.config.name, subresource="status"),
                                     {"status": status})
        self._previous_conditions = {c["type"]: c for c in (written.get("status") or {}).get("conditions") or []}
        self._written_conditions = signature
        self._status_written_at = now

    def _renew_lease(self, node: dict[str, Any] | None = None) -> None:
        name, now = self.config.name, self._clock()
        lease_path = path(group="coordination.k8s.io", resource="leases", namespace=LEASE_NAMESPACE, name=name)
        spec = {"holderIdentity": name, "leaseDurationSeconds": self.config.lease_duration,
                "renewTime": micro_time(now)}
        for _ in range(3):
            lease = self._lease
            try:
                if lease is None:
                    lease = self._client.get(lease_path)
                updated = copy.deepcopy(lease)
                updated["spec"] = {**(lease.get("spec") or {}), **spec}
                self._lease = self._client.replace(lease_path, updated)
                return
            except ApiError as error:
                if error.not_found:
                    self._lease = self._create_lease(spec, node)
                    return
                if not error.conflict:
                    raise
                self._lease = None  # stale: read it again

    def _create_lease(self, spec: dict[str, Any], node: dict[str, Any] | None) -> dict[str, Any]:
        name = self.config.name
        meta: dict[str, Any] = {"name": name, "namespace": LEASE_NAMESPACE}
        if node and node.get("metadata", {}).get("uid"):
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name,
                                        "uid": node["metadata"]["uid"]}]
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {**spec, "acquireTime": spec["renewTime"]}}
        return self._client.create(path(group="coordination.k8s.io", resource="leases",
                                        namespace=LEASE_NAMESPACE), body)

    # --- drain ----------------------------------------------------------------------------

    def _cordon(self, reason: str, message: str) -> None:
        name = self.config.name
        with self._lock:
            self._ready_condition = _condition("Ready", "False", reason, message)
        for attempt in range(5):
            try:
                node = self._client.get(path(resource="nodes", name=name))
                spec = node.setdefault("spec", {})
                spec["unschedulable"] = True
                taints = [t for t in spec.get("taints") or [] if t.get("key") != DRAIN_TAINT]
                spec["taints"] = taints + [{"key": DRAIN_TAINT, "value": reason, "effect": "NoSchedule"}]
                self._client.replace(path(resource="nodes", name=name), node)
                break
            except ApiError as error:
                if error.conflict:
                    continue
                log.warning("could not cordon node %s: %s", name, error)
                break
        try:
            self._write_status(force=True)
        except ApiError as error:
            log.warning("could not write node %s status while draining: %s", name, error)
        self._wake.set()

    def _on_node_event(self, event: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if event == DELETED and self.machine.state is NodeState.READY:
            self._recreate = True
            self._lease = None
            self._wake.set()
        elif event == MODIFIED and new is not None and not self._drain_asked:
            reason = ((new.get("metadata") or {}).get("annotations") or {}).get(DRAIN_ANNOTATION)
            if reason and self.machine.state is NodeState.READY:
                self._drain_asked = True
                self._on_drain_request("OperatorRequest", f"drain requested by annotation {DRAIN_ANNOTATION}={reason}")
