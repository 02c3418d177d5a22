"""The provider with real processes and files, and a sink that records what the API side would get."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from tools.procs import processes_with, wait_until
from vkcmd.pods import StaticResolver, Workspace
from vkcmd.provider import PodManager
from vkcmd.runtime import Runtime


class RecordingSink:
    """The PodSink contract, kept in memory: statuses changed, pods gone, events."""

    def __init__(self):
        self.changed = []
        self.gone = []
        self.events = []
        self.lock = threading.Lock()

    def status_changed(self, uid):
        with self.lock:
            self.changed.append(uid)

    def pod_gone(self, pod, final_status):
        with self.lock:
            self.gone.append((pod["metadata"]["name"], final_status))

    def event(self, pod, event_type, reason, message, container=None):
        with self.lock:
            self.events.append((pod["metadata"]["name"], event_type, reason, message))


class FlakyResolver(StaticResolver):
    """A resolver whose ConfigMap reads fail with an unexpected error until told otherwise."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.broken = True

    def config_map(self, namespace, name):
        if self.broken:
            raise RuntimeError("cache exploded")
        return super().config_map(namespace, name)


@pytest.fixture
def provider(tmp_path):
    made = []

    def make(resolver):
        holder = {}
        runtime = Runtime(tmp_path / "state", on_exit=lambda report: holder["manager"].on_exit(report))
        sink = RecordingSink()
        manager = PodManager(runtime, Workspace(str(tmp_path / "ws")), resolver, sink, pod_ip="10.0.0.9",
                             home=str(tmp_path), base_env={"PATH": os.environ["PATH"],
                                                           "VKCMD_TEST": str(tmp_path)})
        holder["manager"] = manager
        runtime.start()
        manager.start()
        made.append((manager, runtime))
        return manager, sink

    yield make
    for manager, runtime in made:
        manager.stop()
        for pid in processes_with({"VKCMD_TEST": str(tmp_path)}):
            os.kill(pid, 9)
        runtime.stop()


def pod(name, command, **spec):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4()),
                         "creationTimestamp": "2026-11-27T00:00:00Z"},
            "spec": {"restartPolicy": "Never", "nodeName": "n",
                     "containers": [{"name": "c", "image": "none", "command": command}], **spec}}


def phase(manager, uid):
    got = manager.status(uid)
    return got[1]["phase"] if got else None


def test_a_pod_runs_to_succeeded_and_its_status_is_published(provider):
    manager, sink = provider(StaticResolver())
    body = pod("ok", ["sh", "-c", "echo hi"])
    manager.upsert(body)
    wait_until(lambda: phase(manager, body["metadata"]["uid"]) == "Succeeded", 10, "Succeeded")
    status = manager.status(body["metadata"]["uid"])[1]
    assert status["podIP"] == "10.0.0.9"
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert body["metadata"]["uid"] in sink.changed
    assert [e[2] for e in sink.events] == ["Created", "Started"]


def test_an_unexpected_error_fails_the_sync_not_the_node_and_is_retried(provider, monkeypatch):
    import vkcmd.provider.launch as launch_module

    monkeypatch.setattr(launch_module, "CONFIG_RETRY", 0.2)
    resolver = FlakyResolver([{"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "conf", "namespace": "default"}, "data": {"k": "v"}}])
    manager, sink = provider(resolver)
    body = pod("flaky", ["sh", "-c", "cat conf/k"],
               volumes=[{"name": "conf", "configMap": {"name": "conf"}}])
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "conf", "mountPath": "conf"}]
    other = pod("fine", ["true"])
    manager.upsert(body)
    manager.upsert(other)
    wait_until(lambda: any(e[2] == "Failed" and "cache exploded" in e[3] for e in sink.events), 10,
               "a Failed event naming the error")
    waiting = manager.status(body["metadata"]["uid"])[1]["containerStatuses"][0]["state"]["waiting"]
    assert waiting == {"reason": "CreateContainerError", "message": "cache exploded"}
    wait_until(lambda: phase(manager, other["metadata"]["uid"]) == "Succeeded", 10, "the other pod done")
    resolver.broken = False
    wait_until(lambda: phase(manager, body["metadata"]["uid"]) == "Succeeded", 10, "recovery")
    time.sleep(0.1)


class StumblingSink(RecordingSink):
    """A sink that fails the first status notification, as a bug on the API side might."""

    def __init__(self):
        super().__init__()
        self.stumbled = False

    def status_changed(self, uid):
        if not self.stumbled:
            self.stumbled = True
            raise RuntimeError("sink fell over")
        super().status_changed(uid)


def test_a_failing_sync_is_reported_and_retried(tmp_path, monkeypatch):
    import vkcmd.provider.manager as manager_module

    monkeypatch.setattr(manager_module, "SYNC_RETRY", 0.2)
    holder = {}
    runtime = Runtime(tmp_path / "state", on_exit=lambda report: holder["m"].on_exit(report))
    sink = StumblingSink()
    manager = PodManager(runtime, Workspace(str(tmp_path / "ws")), StaticResolver(), sink, pod_ip="10.0.0.9",
                         home=str(tmp_path), base_env={"PATH": os.environ["PATH"]})
    holder["m"] = manager
    runtime.start()
    manager.start()
    try:
        body = pod("stumble", ["sleep", "30"])
        manager.upsert(body)
        wait_until(lambda: any(e[2] == "FailedSync" and "sink fell over" in e[3] for e in sink.events), 10,
                   "a FailedSync event")
        # the first announcement failed; the retried sync announces the same status again
        wait_until(lambda: body["metadata"]["uid"] in sink.changed, 10, "the status announced")
        assert phase(manager, body["metadata"]["uid"]) == "Running"
    finally:
        runtime.kill_now(f'{body["metadata"]["uid"]}/c')
        wait_until(lambda: not runtime.runs(), 10, "the run killed")
        manager.stop()
        runtime.stop()
