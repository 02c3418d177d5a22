"""The API side of this node's pods: feed them to the provider, write back what it publishes.

A watch on pods bound to the node (``spec.nodeName``) drives the provider;
status writes are coalesced per pod in a work queue and sent only when the
status differs from the last one written, as a merge patch of the status
subresource; pods whose processes are gone are deleted with grace 0, as the
kubelet does. It also implements the node's :class:`PodLifecycle` hook.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from vkcmd.backoff import PerKey
from vkcmd.kube.client import MERGE_PATCH, ApiError, KubeClient, path
from vkcmd.kube.events import EventRecorder
from vkcmd.kube.informer import ADDED, DELETED, MODIFIED, SYNCED, Informer
from vkcmd.workqueue import WorkQueue, run_workers

log = logging.getLogger("vkcmd.kube.pods")

STATUS_RETRY_MAX = 30.0  # seconds between attempts at a status write the API keeps refusing
PENDING_WRITE_DELAY = 0.25  # a new pod's first status, while Pending, waits this long for Running to replace it
FINAL_STATUS_PATIENCE = 15.0  # how long a drain waits for final statuses once no process is left


class Provider(Protocol):
    """What this module needs of the provider (``vkcmd.provider.PodManager``)."""

    def upsert(self, pod: dict[str, Any]) -> None: ...
    def remove(self, pod: dict[str, Any]) -> None: ...
    def resync(self, uids: list[str]) -> None: ...
    def status(self, uid: str) -> tuple[dict[str, Any], dict[str, Any]] | None: ...
    def end_all(self, reason: str, message: str, fast: bool) -> None: ...
    def hurry(self) -> None: ...
    def all_stopped(self) -> bool: ...
    def max_grace_period(self) -> float: ...


class References(Protocol):
    """Who reads what the node's pods reference (``kube.objects.ClusterObjects``): told of each pod first."""

    def add_pod(self, pod: dict[str, Any]) -> None: ...
    def remove_pod(self, pod: dict[str, Any]) -> None: ...
    def retain(self, uids: list[str]) -> None: ...


class PodController:
    """Joins the API and the provider; the provider's ``PodSink``."""

    def __init__(self, client: KubeClient, node_name: str, events: EventRecorder, *, writers: int = 2,
                 deleters: int = 4, on_status_written: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
                 references: References | None = None) -> None:
        self._client = client
        self._references = references
        self._events = events
        self._provider: Provider | None = None
        self._writers, self._deleters = writers, deleters  # a wave of deletions is not written one by one
        self._on_written = on_status_written
        self.informer = Informer(client, path(resource="pods"), name="pods",
                                 field_selector=f"spec.nodeName={node_name}", handler=self._on_pod)
        self._status_queue = WorkQueue("pod-status")
        self._delete_queue = WorkQueue("pod-delete")
        self._to_delete: dict[str, dict[str, Any]] = {}  # uid -> metadata of a pod to delete (grace 0)
        self._written: dict[str, dict[str, Any]] = {}
        self._written_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._failures = PerKey(1.0, STATUS_RETRY_MAX)  # uid -> failed writes in a row (status and delete workers)
        self._hurried = threading.Event()
        self._stopped_since: float | None = None
        self.status_writes = 0

    def attach(self, provider: Provider) -> None:
        self._provider = provider

    def start(self) -> None:
        assert self._provider is not None, "attach a provider first"
        self._threads = run_workers(self._status_queue, self._write_status, self._writers)
        self._threads += run_workers(self._delete_queue, self._delete_pod, self._deleters)
        self.informer.start()

    def stop(self) -> None:
        self.informer.stop()
        self._status_queue.shutdown()
        self._delete_queue.shutdown()
        for thread in self._threads:
            thread.join(5)

    # --- from the API -----------------------------------------------------------------------

    def _on_pod(self, event: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        refs = self._references
        if event in (ADDED, MODIFIED) and new is not None:
            if refs is not None:
                refs.add_pod(new)  # its ConfigMaps, Secrets are fetched while the provider gets to it
            self._provider.upsert(new)
        elif event == DELETED and old is not None:
            with self._written_lock:
                self._written.pop(old["metadata"].get("uid"), None)
            self._provider.remove(old)
            if refs is not None:
                refs.remove_pod(old)
        elif event == SYNCED:
            uids = [p["metadata"]["uid"] for p in self.informer.list()]
            if refs is not None:
                refs.retain(uids)
            self._provider.resync(uids)

    # --- PodSink ------------------------------------------------------------------------------

    def status_changed(self, uid: str) -> None:
        """Queue the write. A pod's first status while it is still Pending (its containers being
        created) waits a moment: a Running that follows at once is then one write instead of two."""
        with self._written_lock:
            first = uid not in self._written
        published = self._provider.status(uid) if first and self._provider is not None else None
        if published is not None and published[1].get("phase") == "Pending":
            self._status_queue.add_after(uid, PENDING_WRITE_DELAY)
        else:
            self._status_queue.add(uid)

    def pod_gone(self, pod: dict[str, Any], final_status: dict[str, Any] | None) -> None:
        meta = pod["metadata"]
        with self._written_lock:
            self._to_delete[meta["uid"]] = (meta, final_status)
        self._delete_queue.add(meta["uid"])

    def _delete_pod(self, uid: str) -> None:
        """Delete a pod whose processes and workspace are gone, with grace 0 (retried until the API takes it)."""
        with self._written_lock:
            meta, final_status = self._to_delete.get(uid, (None, None))
        if meta is None:
            return
        if final_status is not None and not self._write(uid, meta, final_status):
            return  # retried later: the statuses go first, as the kubelet does
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": uid}}
        try:
            self._client.delete(path(resource="pods", namespace=meta["namespace"], name=meta["name"]), body)
        except ApiError as error:
            if error.retryable:
                self._retry_later(uid, self._delete_queue)
                return
            if not (error.not_found or error.conflict):
                log.warning("could not delete pod %s/%s: %s", meta["namespace"], meta["name"], error)
        with self._written_lock:
            self._to_delete.pop(uid, None)
        self._failures.succeeded(uid)

    def event(self, pod: dict[str, Any], event_type: str, reason: str, message: str,
              container: str | None = None) -> None:
        self._events.record(pod, event_type, reason, message, container)

    # --- status writes ------------------------------------------------------------------------

    def _write_status(self, uid: str) -> None:
        with self._written_lock:
            if uid in self._to_delete:
                return  # its deleter writes the final status first: not twice
        published = self._provider.status(uid)
        if published is not None:
            self._write(uid, *published, queue=self._status_queue)

    def _write(self, uid: str, meta: dict[str, Any], status: dict[str, Any],
               queue: WorkQueue | None = None) -> bool:
        """Patch the status if it differs from the last written; False when it must be retried."""
        queue = self._delete_queue if queue is None else queue  # (an empty WorkQueue is falsy)
        with self._written_lock:
            if self._written.get(uid) == status:
                return True
        body = {"metadata": {"uid": uid},
                "status": {**status, "reason": status.get("reason"), "message": status.get("message")}}
        try:
            self._client.patch(path(resource="pods", namespace=meta["namespace"], name=meta["name"],
                                    subresource="status"), body, MERGE_PATCH)
        except ApiError as error:
            if error.not_found or error.conflict:
                return True  # the pod is gone (or replaced by another of the same name)
            failures, delay = self._retry_later(uid, queue)
            if failures == 1 or delay >= STATUS_RETRY_MAX:
                log.warning("status of pod %s/%s not written: %s; retrying in %.0fs", meta["namespace"],
                            meta["name"], error, delay)
            return False
        self._failures.succeeded(uid)
        with self._written_lock:
            self.status_writes += 1
            self._written[uid] = status
        if self._on_written is not None:
            self._on_written(meta, status)
        return True

    def _retry_later(self, uid: str, queue: WorkQueue) -> tuple[int, float]:
        """Back off (1 s doubling to STATUS_RETRY_MAX) before the next attempt for ``uid``."""
        failures, delay = self._failures.failed(uid)
        queue.add_after(uid, delay)
        return failures, delay

    def idle(self) -> bool:
        """No status write pending: nothing queued, and every pod written once is written as published."""
        if len(self._status_queue):
            return False
        with self._written_lock:
            written = list(self._written.items())
        for uid, status in written:
            published = self._provider.status(uid)
            if published is not None and published[1] != status:
                return False
        return True

    # --- PodLifecycle (for the node) ---------------------------------------------------------

    def max_grace_period(self) -> float:
        return self._provider.max_grace_period()

    def drain(self, reason: str, message: str, fast: bool) -> None:
        self.informer.wait_synced(timeout=10)
        self._provider.end_all(reason, message, fast)

    def hurry(self) -> None:
        self._hurried.set()
        self._provider.hurry()

    def wait_drained(self, timeout: float) -> bool:
        """True once no pod process is left and the final statuses are written — or, when the API
        does not take them, once FINAL_STATUS_PATIENCE has passed (or a second signal came)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._provider.all_stopped():
                if self._stopped_since is None:
                    self._stopped_since = time.monotonic()
                if self.idle():
                    return True
                if self._hurried.is_set() or time.monotonic() - self._stopped_since > FINAL_STATUS_PATIENCE:
                    log.warning("giving up on writing the final status of %d pod(s): the API does not take "
                                "them", len(self._failures))
                    return True
            time.sleep(0.05)
        return False
