"""kubelite's controllers: the kube-scheduler and kube-controller-manager parts a test cluster needs.

Owns starting and stopping them.  Each controller is an ordinary API client:
it reaches the server over HTTPS with the real `kubernetes` client built from
a kubeconfig (see `kube.py`, the only module that touches the client),
follows collections through shared list+watch informers, and works from a
queue in its own named thread:

- `scheduler`      binds pending pods to nodes (`tools.kubelite.scheduler`)
- `deployments`    Deployment -> ReplicaSet -> Pods, replica counts, status
- `jobs`           Job -> Pods: completions, parallelism, Indexed, backoffLimit, podFailurePolicy
- `nodelifecycle`  expired node leases -> Ready Unknown + unreachable taints
- `namespaces`     `default` ServiceAccount and `kube-root-ca.crt` per namespace
- `gc`             dependents of deleted ReplicaSets/Deployments/Jobs
- `certificates`   CSR auto-approval (nodeclient/selfnodeclient) and the kubelet signers

`start()` returns a running `Controllers`; `Controllers.stop()` ends every
thread it started (watches are closed so no thread waits on the network).
"""

from __future__ import annotations

import logging
import threading

from .certificates import CertificateController
from .deployments import DeploymentController
from .gc import GarbageCollector
from .jobs import JobController
from .informers import Informers
from .kube import Kube
from .namespaces import NamespaceController, cluster_ca_pem
from .nodelifecycle import NodeLifecycleController
from .scheduler import SchedulerController

__all__ = ["Controllers", "start"]

log = logging.getLogger(__name__)


class Controllers:
    """The running controllers; `stop()` ends them.  Built by `start()`."""

    def __init__(self, kube: Kube, informers: Informers, stop_event: threading.Event, parts: list):
        self.kube = kube
        self.informers = informers
        self._stop = stop_event
        self.parts = parts

    def wait_synced(self, timeout: float = 10.0) -> bool:
        """True once every informer has listed its collection."""
        return self.informers.wait_synced(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every thread: set the stop event, close watches, join (bounded by `timeout`)."""
        if self._stop.is_set():
            return
        self._stop.set()
        for informer in self.informers.all():
            informer.close()
        per_thread = max(0.2, timeout / max(1, len(self.parts) + len(self.informers.all())))
        for part in self.parts:
            part.join(per_thread)
        for informer in self.informers.all():
            informer.join(per_thread)
        self.kube.close()

    def __enter__(self) -> "Controllers":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(kubeconfig_path: str, *, lease_grace: float = 40.0, scheduler: bool = True, csr_sign=None,
          csr_max_seconds: int = 365 * 24 * 3600) -> Controllers:
    """Start the controllers against the cluster of `kubeconfig_path`.

    `lease_grace`: seconds after a node's last lease renewal before it is
    marked Unknown and tainted unreachable.  `scheduler=False` leaves pod
    placement to someone else (e.g. a test binding by hand).
    """
    kube = Kube(kubeconfig_path)
    stop_event = threading.Event()
    informers = Informers(kube, stop_event)
    parts: list = []
    if scheduler:
        parts.append(SchedulerController(kube, informers, stop_event))
    parts.append(DeploymentController(kube, informers, stop_event))
    parts.append(JobController(kube, informers, stop_event))
    parts.append(NodeLifecycleController(kube, informers, stop_event, lease_grace=lease_grace))
    parts.append(NamespaceController(kube, informers, stop_event, ca_pem=cluster_ca_pem(kubeconfig_path)))
    parts.append(GarbageCollector(kube, informers, stop_event))
    if csr_sign is not None:
        parts.append(CertificateController(kube, informers, stop_event, sign=csr_sign, max_seconds=csr_max_seconds))
    for part in parts:
        part.start()
    informers.start()
    log.info("kubelite controllers started (%s)", ", ".join(type(p).__name__ for p in parts))
    return Controllers(kube, informers, stop_event, parts)
