"""The node's Lease in ``kube-node-lease``: created on first renewal, renewed by replace.

It owns the cached Lease object and the conflict retries (bounded, by
:func:`vkcmd.backoff.retry`; a give-up is raised to the heartbeat, which logs
and tries again sooner). It knows nothing of the Node's status or the walltime.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any

from vkcmd.backoff import Backoff, retry
from vkcmd.kube.client import ApiError, KubeClient, path
from vkcmd.timefmt import micro_time

log = logging.getLogger("vkcmd.kube.lease")

LEASE_NAMESPACE = "kube-node-lease"
CONFLICT_ATTEMPTS = 3


class NodeLease:
    """Renews the Lease named after the node (holder = the node) with ``duration`` seconds."""

    def __init__(self, client: KubeClient, name: str, duration: int, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self.name = name
        self.duration = duration
        self._clock = clock
        self._lease: dict[str, Any] | None = None
        self._path = path(group="coordination.k8s.io", resource="leases", namespace=LEASE_NAMESPACE, name=name)

    def forget(self) -> None:
        """The cached Lease is stale (the Node was deleted): read it again next time."""
        self._lease = None

    def renew(self, node: dict[str, Any] | None = None) -> None:
        """Write renewTime = now; create the Lease (owned by ``node``) when it does not exist.

        Conflicts (someone else wrote it) are retried a few times with a fresh
        read; after that the last ApiError is raised (logged once by the retry).
        """
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": self.duration,
                "renewTime": micro_time(self._clock())}

        def attempt() -> None:
            lease = self._lease
            try:
                if lease is None:
                    lease = self._client.get(self._path)
                updated = copy.deepcopy(lease)
                updated["spec"] = {**(lease.get("spec") or {}), **spec}
                self._lease = self._client.replace(self._path, updated)
            except ApiError as error:
                if error.not_found:
                    self._lease = self._create(spec, node)
                    return
                if error.conflict:
                    self._lease = None  # stale: read it again
                raise

        retry(attempt, attempts=CONFLICT_ATTEMPTS, retry_on=lambda e: isinstance(e, ApiError) and e.conflict,
              what=f"renewing lease {LEASE_NAMESPACE}/{self.name} (it kept changing)", log=log,
              backoff=Backoff(0.05, 0.5))

    def _create(self, spec: dict[str, Any], node: dict[str, Any] | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": LEASE_NAMESPACE}
        uid = ((node or {}).get("metadata") or {}).get("uid")
        if uid:
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": uid}]
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {**spec, "acquireTime": spec["renewTime"]}}
        return self._client.create(path(group="coordination.k8s.io", resource="leases",
                                        namespace=LEASE_NAMESPACE), body)
