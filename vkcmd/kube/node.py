"""The Node: registration, heartbeat, status and drain — driven by the node machine.

One heartbeat thread renews the Lease (:mod:`vkcmd.kube.lease`), writes the node
status whenever the API's view of the conditions differs from the truth (or at
least every status interval), counts ``jiriaf.alivetime`` down and asks for a
drain a margin before the walltime ends (the arithmetic: :mod:`vkcmd.kube.walltime`).
A watch on the Node object shows the API's view, and re-creates the Node if someone
deletes it. Draining runs on the caller's thread, through the :class:`PodLifecycle` hook.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from fsm import Machine
from vkcmd import __version__
from vkcmd.backoff import Backoff, retry
from vkcmd.kube.client import JSON_PATCH, MERGE_PATCH, ApiError, KubeClient, path
from vkcmd.kube.informer import ADDED, DELETED, MODIFIED, Informer
from vkcmd.kube.lease import LEASE_NAMESPACE, NodeLease
from vkcmd.kube.nodelabels import refused_labels, split
from vkcmd.kube.nodetypes import EventSink, HostFacts, NodeConfig, PodLifecycle
from vkcmd.kube.walltime import Walltime
from vkcmd.machines import NODE, NodeEvent, NodeState
from vkcmd.timefmt import rfc3339

log = logging.getLogger("vkcmd.kube.node")

PROVIDER_TAINT = "virtual-kubelet.io/provider"
DRAIN_TAINT = "vkcmd.jiriaf.io/draining"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
DRAIN_ANNOTATION = "vkcmd.jiriaf.io/drain"  # an operator sets it (any value = reason) to drain the node
__all__ = ["DRAIN_ANNOTATION", "DRAIN_TAINT", "LEASE_NAMESPACE", "EventSink", "HostFacts", "NodeConfig",
           "NodeController", "PodLifecycle"]


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def _strip_times(conditions: Iterable[dict[str, Any]]) -> list[tuple]:
    return sorted((c["type"], c["status"], c.get("reason"), c.get("message")) for c in conditions)


class NodeController:
    """Owns the Node object and its Lease for the life of the process."""

    def __init__(self, client: KubeClient, config: NodeConfig, facts: HostFacts, pods: PodLifecycle, *,
                 observers: Iterable[Callable] = (), clock: Callable[[], float] = time.time,
                 on_drain_request: Callable[[str, str], None] | None = None, events: EventSink | None = None) -> None:
        self._client = client
        self._events = events
        self.config = config
        self._facts = facts
        self._pods = pods
        self._clock = clock
        self._on_drain_request = on_drain_request or (lambda reason, message: None)
        self.machine: Machine = NODE.new(config.name, observers=observers)
        self.started_at = clock()
        self.walltime = Walltime(self.started_at, config.walltime, config.alivetime_interval, config.drain_margin)
        self.lease = NodeLease(client, config.name, config.lease_duration, clock=clock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ready_condition = _condition("Ready", "True", "KubeletReady", "vkcmd is posting ready status")
        self._written_conditions: list[tuple] | None = None
        self._api_differs = False  # the API shows other conditions than ours (e.g. Unknown after an outage)
        self._status_written_at = 0.0
        self._alivetime_written: int | None = None
        self._previous_conditions: dict[str, dict[str, Any]] = {}
        self._recreate = False
        self._drain_asked = False
        self._refused: set[str] = set()  # labels the API refused to let this node set
        self._thread: threading.Thread | None = None
        self._informer = Informer(client, path(resource="nodes"), name="node",
                                  field_selector=f"metadata.name={config.name}", handler=self._on_node_event)

    # --- public -------------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        """Wall-clock time at which the walltime ends (None: unlimited)."""
        return self.walltime.deadline

    def alivetime(self) -> int | None:
        return self.walltime.alivetime(self._clock())

    def start(self) -> None:
        """Register (retrying until the API answers or stop), then start the heartbeat."""
        left_out = split(self.labels(), self.config.node_identity)[1]
        if left_out:
            log.info("running as node identity system:node:%s: not setting %s (NodeRestriction forbids a node "
                     "these labels; select vkcmd nodes on type=virtual-kubelet or jiriaf.* instead)", self.config.name,
                     ", ".join(f"{k}={v}" for k, v in sorted(left_out.items())))
        backoff = Backoff(0.5, 30.0, jitter=0.2)
        while not self._stop.is_set():
            try:
                self._register()
                break
            except ApiError as error:
                wait = backoff.next()
                log.warning("registration of node %s failed: %s; retrying in %.1fs", self.config.name, error, wait)
                self._stop.wait(wait)
        if self._stop.is_set():
            return
        self.machine.fire(NodeEvent.REGISTERED, reason="node and lease written")
        self._informer.start()
        self._thread = threading.Thread(target=self._heartbeat, name="node-heartbeat", daemon=True)
        self._thread.start()

    def drain(self, reason: str, message: str, fast: bool = False) -> None:
        """Ready/Registering → Draining → Expired: cordon, terminate every pod, stop the lease.

        Bounded: when the pods are not gone after the longest grace period plus
        ``drain_patience``, the rest is forced (no more grace); if even that does
        not end them within ``drain_patience``, the node expires anyway, saying so.
        """
        if self.machine.fire_if_allowed(NodeEvent.DRAIN, reason=reason) is None:
            return
        self._cordon(reason, message)
        patience = self.config.drain_patience
        limit = (0.0 if fast else self._pods.max_grace_period()) + patience
        self._pods.drain(reason, message, fast)
        if not self._wait_drained(limit):
            log.warning("drain of node %s not done after %.0fs (longest grace period + %.0fs): forcing the rest",
                        self.config.name, limit, patience)
            self._pods.hurry()
            if not self._wait_drained(patience):
                log.error("drain of node %s still not done %.0fs after forcing it: expiring anyway",
                          self.config.name, patience)
        self.machine.fire(NodeEvent.DRAINED, reason=reason)

    def _wait_drained(self, limit: float) -> bool:
        until = time.monotonic() + limit
        while not self._pods.wait_drained(timeout=max(0.05, min(1.0, until - time.monotonic()))):
            if time.monotonic() >= until:
                return False
        return True

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

    def _labels_to_set(self) -> dict[str, str]:
        kept = split(self.labels(), self.config.node_identity)[0]
        return {k: v for k, v in kept.items() if k not in self._refused}

    def _taints(self) -> list[dict[str, str]]:
        return [{"key": PROVIDER_TAINT, "value": self.config.provider, "effect": "NoSchedule"}]

    def _capacity(self) -> dict[str, str]:
        c, f = self.config, self._facts
        return {"cpu": c.cpu or str(f.cpus), "memory": c.memory or f"{f.memory_bytes // 1024}Ki",
                "pods": str(c.max_pods), "ephemeral-storage": c.ephemeral_storage or f"{f.storage_bytes // 1024}Ki"}

    def _allocatable(self) -> dict[str, str]:
        """Capacity less the kubelet's default hard eviction reserve for the node filesystem (10 %)."""
        allocatable = self._capacity()
        if not self.config.ephemeral_storage:
            allocatable["ephemeral-storage"] = f"{self._facts.storage_bytes * 9 // 10 // 1024}Ki"
        return allocatable

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
            "allocatable": self._allocatable(),
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
        created = None
        while created is None:
            try:
                created = self._create_or_adopt()
            except ApiError as error:
                refused = [k for k in refused_labels(error.message) if k not in self._refused]
                if error.status != 403 or not refused:
                    raise
                self._refused.update(refused)  # named once, then registered without them
                message = f"the API server refused labels {', '.join(refused)} for this node: {error.message}"
                log.warning("node %s: %s; registering without them", self.config.name, message)
                if self._events is not None:
                    self._events.record({"kind": "Node", "metadata": {"name": self.config.name,
                                                                      "uid": self.config.name}},
                                        "Warning", "LabelRefused", message)
        self._register_done(created)

    def _create_or_adopt(self) -> dict[str, Any]:
        name = self.config.name
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": self._labels_to_set()},
                "spec": {"taints": self._taints()}}
        try:
            created = self._client.create(path(resource="nodes"), body)
            log.info("node %s created", name)
            return created
        except ApiError as error:
            if not error.already_exists:
                raise
        return retry(self._adopt, attempts=5, retry_on=lambda e: isinstance(e, ApiError) and e.conflict,
                     what=f"adopting node {name} (it kept changing)", log=log)

    def _register_done(self, created: dict[str, Any]) -> None:
        self._previous_conditions = {c["type"]: c for c in (created.get("status") or {}).get("conditions") or []}
        self._write_status(force=True)
        self.lease.renew(created)

    def _adopt(self) -> dict[str, Any]:
        """Take over an existing Node of our name, keeping what operators added (409 when it changed meanwhile)."""
        name = self.config.name
        existing = self._client.get(path(resource="nodes", name=name))
        updated = copy.deepcopy(existing)
        meta = updated.setdefault("metadata", {})
        labels = meta.setdefault("labels", {})
        labels.update(self._labels_to_set())
        if self.config.walltime <= 0:
            labels.pop("jiriaf.walltime", None)
            labels.pop("jiriaf.alivetime", None)
        (meta.get("annotations") or {}).pop(DRAIN_ANNOTATION, None)
        spec = updated.setdefault("spec", {})
        spec.pop("unschedulable", None)
        ours = {t["key"] for t in self._taints()} | {DRAIN_TAINT, UNSCHEDULABLE_TAINT}
        if not self.config.node_identity:
            spec["taints"] = [t for t in spec.get("taints") or [] if t.get("key") not in ours] + self._taints()
        elif not any(t.get("key") == PROVIDER_TAINT for t in spec.get("taints") or []):
            # NodeRestriction: a node may set taints when it registers, never change them after
            log.warning("node %s exists without the %s taint and a node identity may not add it: pods that do "
                        "not tolerate it may be scheduled here until an operator taints the node or deletes "
                        "it", name, PROVIDER_TAINT)
        adopted = self._client.replace(path(resource="nodes", name=name), updated)
        log.info("node %s existed; adopted", name)
        return adopted

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
                    self.lease.renew()
                    next_lease = now + self.config.lease_renew_interval
                self._write_status()
                self._update_alivetime(now)
            except ApiError as error:
                failures += 1
                # what the API shows is unknown now (the lifecycle controller may say Unknown by the time it
                # answers): write the status at the first heartbeat that works, not when the node watch,
                # whose back-off may have grown through the outage, reconnects
                self._api_differs = True
                if failures == 1 or failures % 30 == 0:
                    log.warning("node heartbeat failed (%d in a row): %s", failures, error)
                next_lease = now + min(2.0, self.config.lease_renew_interval)
            else:
                if failures:
                    log.info("node heartbeat works again after %d failure(s)", failures)
                failures = 0
            self._check_walltime(now)  # needs no API: the walltime ends whether or not it answers
            wake_at = min(next_lease, self.walltime.next_wakeup(now, self._pods.max_grace_period()))
            self._wake.wait(max(0.05, wake_at - self._clock()))
            self._wake.clear()

    def _check_walltime(self, now: float) -> None:
        if self._drain_asked or self.machine.state is not NodeState.READY:
            return
        if self.walltime.drain_due(now, self._pods.max_grace_period()):
            self._drain_asked = True
            self._on_drain_request("WalltimeExpired", f"walltime of {self.config.walltime}s ends in "
                                                      f"{self.walltime.alivetime(now)}s")

    def _update_alivetime(self, now: float) -> None:
        alive = self.walltime.alivetime_due(now, self._alivetime_written)
        if alive is None:
            return
        self._client.patch(path(resource="nodes", name=self.config.name),
                           {"metadata": {"labels": {"jiriaf.alivetime": str(alive)}}}, MERGE_PATCH)
        self._alivetime_written = alive

    def _write_status(self, force: bool = False) -> None:
        """Write the status when the API's view differs from ours, or the status interval has passed."""
        now = self._clock()
        status = self._status(now)
        signature = _strip_times(status["conditions"])
        if not force and not self._api_differs and signature == self._written_conditions and \
                now - self._status_written_at < self.config.status_interval:
            return
        self._api_differs = False  # (set again by a watch event that shows otherwise)
        try:
            written = self._client.patch(path(resource="nodes", name=self.config.name, subresource="status"),
                                         {"status": status})
        except ApiError:
            self._api_differs = True
            raise
        self._previous_conditions = {c["type"]: c for c in (written.get("status") or {}).get("conditions") or []}
        self._written_conditions = signature
        self._status_written_at = now

    # --- drain ----------------------------------------------------------------------------

    def _cordon(self, reason: str, message: str) -> None:
        """Unschedulable plus the drain taint (a node identity: unschedulable only), as a JSON patch
        (no resourceVersion: nothing to conflict on)."""
        name = self.config.name
        with self._lock:
            self._ready_condition = _condition("Ready", "False", reason, message)
        taint = {"key": DRAIN_TAINT, "value": reason, "effect": "NoSchedule"}

        def patch() -> None:
            ops = [{"op": "add", "path": "/spec/unschedulable", "value": True}]
            if self.config.node_identity:  # may not change its taints (NodeRestriction): unschedulable only
                self._client.patch(path(resource="nodes", name=name), ops, JSON_PATCH)
                return
            taints = (self._client.get(path(resource="nodes", name=name)).get("spec") or {}).get("taints")
            if taints is None:
                ops.append({"op": "add", "path": "/spec/taints", "value": [taint]})
            elif not any(t.get("key") == DRAIN_TAINT for t in taints):
                ops.append({"op": "add", "path": "/spec/taints/-", "value": taint})
            self._client.patch(path(resource="nodes", name=name), ops, JSON_PATCH)

        try:  # 422: the taint list appeared or vanished between the read and the patch; read again
            retry(patch, attempts=5, retry_on=lambda e: isinstance(e, ApiError) and (e.retryable or e.status == 422),
                  what=f"cordoning node {name}", log=log, backoff=Backoff(0.2, 2.0), stop=self._stop)
        except ApiError as error:
            if not error.retryable and error.status != 422:
                log.warning("could not cordon node %s: %s", name, error)
        try:
            self._write_status(force=True)
        except ApiError as error:
            log.warning("could not write node %s status while draining: %s", name, error)
        self._wake.set()

    def _on_node_event(self, event: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if event == DELETED and self.machine.state is NodeState.READY:
            self._recreate = True
            self.lease.forget()
            self._wake.set()
            return
        if event not in (ADDED, MODIFIED) or new is None:
            return
        shown = _strip_times((new.get("status") or {}).get("conditions") or [])
        if self._written_conditions is not None and shown != _strip_times(self._conditions()):
            self._api_differs = True  # someone else wrote them (the node lifecycle controller): write ours now
            self._wake.set()
        if event == MODIFIED and not self._drain_asked:
            reason = ((new.get("metadata") or {}).get("annotations") or {}).get(DRAIN_ANNOTATION)
            if reason and self.machine.state is NodeState.READY:
                self._drain_asked = True
                self._on_drain_request("OperatorRequest", f"drain requested by annotation {DRAIN_ANNOTATION}={reason}")
