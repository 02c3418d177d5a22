"""The API view of this node's pods: a watch-backed cache and final statuses on drain.

This is the part of the pod side that needs no processes: it knows which pods
are bound to the node and writes the final status of each when the node drains
(phase Failed, reason naming why), as the kubelet does on node shutdown. The
process side plugs in through :meth:`ApiPodLifecycle.set_terminator`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from vkcmd.kube.client import ApiError, KubeClient, path
from vkcmd.kube.informer import Informer
from vkcmd.timefmt import rfc3339

log = logging.getLogger("vkcmd.kube.pods")

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

# Terminates the processes of every pod (grace unless fast) and returns when none is left.
Terminator = Callable[[list[dict[str, Any]], bool, threading.Event], None]


def final_status(pod: dict[str, Any], reason: str, message: str, now: float) -> dict[str, Any]:
    """The status a pod ends with when the node goes away under it."""
    stamp = rfc3339(now)
    statuses = []
    for container in (pod.get("status") or {}).get("containerStatuses") or \
            [{"name": c["name"], "image": c.get("image", "")} for c in pod["spec"].get("containers", [])]:
        state = container.get("state") or {}
        if "terminated" in state:
            statuses.append(container)
            continue
        started = (state.get("running") or {}).get("startedAt")
        terminated = {"exitCode": 137 if started else 0, "reason": reason, "message": message,
                      "finishedAt": stamp}
        if started:
            terminated["startedAt"] = started
        statuses.append({**container, "ready": False, "started": False, "state": {"terminated": terminated}})
    return {"phase": "Failed", "reason": reason, "message": message, "containerStatuses": statuses}


class ApiPodLifecycle:
    """Implements the node's PodLifecycle hook over the pods bound to this node."""

    def __init__(self, client: KubeClient, node_name: str, *, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._clock = clock
        self.informer = Informer(client, path(resource="pods"), name="pods",
                                 field_selector=f"spec.nodeName={node_name}")
        self._terminator: Terminator | None = None
        self._hurry = threading.Event()
        self._drained = threading.Event()

    def set_terminator(self, terminator: Terminator) -> None:
        self._terminator = terminator

    def start(self) -> None:
        self.informer.start()

    def stop(self) -> None:
        self.informer.stop()

    def pods(self) -> list[dict[str, Any]]:
        return [p for p in self.informer.list() if (p.get("status") or {}).get("phase") not in TERMINAL_PHASES]

    # --- PodLifecycle ---------------------------------------------------------------------

    def max_grace_period(self) -> float:
        return max((float((p.get("spec") or {}).get("terminationGracePeriodSeconds") or 30) for p in self.pods()),
                   default=0.0)

    def drain(self, reason: str, message: str, fast: bool) -> None:
        self.informer.wait_synced(timeout=10)
        pods = self.pods()
        log.info("terminating %d pod(s): %s", len(pods), reason)
        if self._terminator is not None:
            if fast:
                self._hurry.set()
            self._terminator(pods, fast, self._hurry)
        for pod in pods:
            self._write_final_status(pod, reason, message)
        self._drained.set()

    def hurry(self) -> None:
        self._hurry.set()

    def wait_drained(self, timeout: float) -> bool:
        return self._drained.wait(timeout)

    def _write_final_status(self, pod: dict[str, Any], reason: str, message: str) -> None:
        meta = pod["metadata"]
        status = final_status(pod, reason, message, self._clock())
        try:
            self._client.patch(path(resource="pods", namespace=meta["namespace"], name=meta["name"],
                                    subresource="status"), {"status": status})
        except ApiError as error:
            if not error.not_found:
                log.warning("could not write the final status of pod %s/%s: %s", meta["namespace"],
                            meta["name"], error)
