"""The shipped backend on a real runtime for the kubelet API tests: ``serving.NodeBackend`` over a
started ``Runtime``, ``PodManager`` and ``LogIndexer`` (real processes, real log files and index).

:class:`TestNode` is that NodeBackend plus ``add_pod`` (upsert a pod the way the pod
watch would, and wait until its containers run) and ``close`` (stop everything,
kill what is left). No part of the backend is replaced.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from tools.procs import processes_with, wait_until
from vkcmd.containerlogs import LogIndexer
from vkcmd.pods import StaticResolver, Workspace
from vkcmd.provider import PodManager
from vkcmd.runtime import Runtime
from vkcmd.serving import NodeBackend


class _Sink:
    """Where the pod watch's side would send statuses and events: nowhere (the tests read the API)."""

    def status_changed(self, uid):
        pass

    def pod_gone(self, pod, final_status):
        pass

    def event(self, pod, event_type, reason, message, container=None):
        pass


class TestNode(NodeBackend):
    __test__ = False  # not a test class

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = {"VKCMD_KUBELETAPI_TEST": str(root)}
        holder: dict[str, PodManager] = {}
        self.runtime = Runtime(root / "state", on_exit=lambda report: holder["manager"].on_exit(report))
        self.indexer = LogIndexer()
        self.manager = PodManager(self.runtime, Workspace(str(root / "ws")), StaticResolver(), _Sink(),
                                  pod_ip="127.0.0.1", home=str(root),
                                  base_env={"PATH": os.environ["PATH"], **self.marker}, logs=self.indexer,
                                  backoff_initial=0.2)
        holder["manager"] = self.manager
        self.indexer.start()
        self.runtime.start()
        self.manager.start()
        super().__init__(self.manager, self.runtime, self.indexer)

    def add_pod(self, namespace: str, name: str, containers: Mapping[str, Sequence[str]], uid: str | None = None,
                restart_policy: str = "Never", wait: bool = True) -> dict:
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "uid": uid or str(uuid.uuid4()),
                             "creationTimestamp": "2026-11-27T00:00:00Z"},
                "spec": {"restartPolicy": restart_policy, "nodeName": "vk-test",
                         "containers": [{"name": n, "image": "none", "command": list(c)}
                                        for n, c in containers.items()]}}
        self.manager.upsert(body)
        if wait:
            wait_until(lambda: self._all_running(body["metadata"]["uid"], len(containers)), 15,
                       f"the containers of {namespace}/{name} started")
        return body

    def _all_running(self, uid: str, count: int) -> bool:
        got = self.manager.status(uid)
        statuses = (got[1].get("containerStatuses") or []) if got else []
        started = [s for s in statuses if "waiting" not in s.get("state", {"waiting": {}})]
        return len(started) == count

    def close(self) -> None:
        self.manager.stop()
        for pid in processes_with(self.marker):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        self.runtime.stop()
        self.indexer.stop()
