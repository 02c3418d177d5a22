"""What the node controller is given: its settings, the host's facts, and the hooks it calls.

Declarations only (a dataclass and protocols), so that the node, its tests and the
app share them without importing the controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class HostFacts(Protocol):
    """Facts about the host the node reports (read by the runtime side, handed in by the app)."""

    hostname: str
    cpus: int
    memory_bytes: int
    storage_bytes: int
    os: str
    arch: str
    kernel: str
    os_image: str
    machine_id: str
    boot_id: str


class EventSink(Protocol):
    """Where node events go (``kube.events.EventRecorder``)."""

    def record(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> None: ...


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
    ephemeral_storage: str | None = None
    lease_duration: int = 40
    lease_renew_interval: float = 10.0
    status_interval: float = 300.0
    alivetime_interval: float = 60.0
    drain_margin: float = 60.0
    delete_on_exit: bool = False
    drain_patience: float = 30.0  # beyond the longest grace period, before a drain is forced
    node_identity: bool = False  # the client is system:node:<name>: NodeRestriction's label rule applies
