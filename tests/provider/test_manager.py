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
from vkcmd.runtime.probes import ProbeRunner


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

    def make(resolver, probes=None, sink=None):
        holder = {}
        runtime = Runtime(tmp_path / "state", on_exit=lambda report: holder["manager"].on_exit(report))
        sink = sink or RecordingSink()
        manager = PodManager(runtime, Workspace(str(tmp_path / "ws")), resolver, sink, pod_ip="10.0.0.9",
                             home=str(tmp_path), base_env={"PATH": os.environ["PATH"],
                                                           "VKCMD_TEST": str(tmp_path)},
                             probes=probes)
        holder["manager"] = manager
        runtime.start()
        manager.start()
        made.append((manager, runtime, probes))
        return manager, sink

    yield make
    for manager, runtime, probes in made:
        manager.stop()
        for pid in processes_with({"VKCMD_TEST": str(tmp_path)}):
            os.kill(pid, 9)
        runtime.stop()
        if probes is not None:
            probes.stop()


def pod(name, command, **spec):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4()),
                         "creationTimestamp": "2026-11-27T00:00:00Z"},
            "spec": {"restartPolicy": "Never", "nodeName": "n",
                     "containers": [{"name": "c", "image": "none", "command": command}], **spec}}


def ready(manager, uid):
    got = manager.status(uid)
    return bool(got) and any(c["type"] == "Ready" and c["status"] == "True" for c in got[1].get("conditions") or [])


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


def test_a_long_deadline_and_a_1s_probe_keep_the_timer_heap_bounded(provider):
    probes = ProbeRunner(workers=2)
    manager, sink = provider(StaticResolver(), probes)
    body = pod("steady", ["sleep", "60"], activeDeadlineSeconds=86400)
    body["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    uid = body["metadata"]["uid"]
    manager.upsert(body)
    wait_until(lambda: ready(manager, uid), 10, "Ready by its probe")
    sizes = []
    for _ in range(6):  # each probe result is a sync that re-adds the deadline and the next probe
        time.sleep(1)
        sizes.append(manager._queue.timers())
    assert max(sizes) <= 3, sizes
    manager.remove(body)


class WedgingLogs:
    """A LogWatcher whose first rotations fail the way a directory at ``stdout.previous`` once made them."""

    def __init__(self, failures):
        self.failures = failures
        self.rotations = 0

    def watch(self, container_dir):
        pass

    def unwatch(self, container_dir):
        pass

    def notify(self, container_dir):
        pass

    def rotate(self, container_dir):
        self.rotations += 1
        if self.rotations <= self.failures:
            raise IsADirectoryError(21, "Is a directory", os.path.join(container_dir, "stdout.previous"))


def test_an_unexpected_failure_before_launch_waits_with_a_reason_and_is_retried_with_back_off(tmp_path, monkeypatch):
    import vkcmd.provider.launch as launch_module

    monkeypatch.setattr(launch_module, "CONFIG_RETRY", 0.3)
    holder = {}
    runtime = Runtime(tmp_path / "state", on_exit=lambda report: holder["m"].on_exit(report))
    sink = RecordingSink()
    logs = WedgingLogs(failures=3)
    manager = PodManager(runtime, Workspace(str(tmp_path / "ws")), StaticResolver(), sink, pod_ip="10.0.0.9",
                         home=str(tmp_path), base_env={"PATH": os.environ["PATH"]}, logs=logs,
                         backoff_initial=0.01, backoff_max=5)
    holder["m"] = manager
    runtime.start()
    manager.start()
    try:
        body = pod("wedged", ["sh", "-c", "test -e ran || { touch ran; exit 1; }"], restartPolicy="OnFailure")
        uid = body["metadata"]["uid"]
        manager.upsert(body)
        # the restart's rotation fails: the container waits with the error, never stuck in Staging
        wait_until(lambda: (manager.status(uid) or [None, {}])[1].get("containerStatuses", [{}])[0]
                   .get("state", {}).get("waiting", {}).get("reason") == "CreateContainerError", 10,
                   "a CreateContainerError waiting reason")
        waiting = manager.status(uid)[1]["containerStatuses"][0]["state"]["waiting"]
        assert "stdout.previous" in waiting["message"]
        assert any(e[2] == "Failed" and "Is a directory" in e[3] for e in sink.events)
        started = time.monotonic()
        wait_until(lambda: phase(manager, uid) == "Succeeded", 15, "Succeeded once the rotation works")
        # three failures retried after 0.3, 0.6 and 1.2 s: backed off, not hammered
        assert logs.rotations == 4 and time.monotonic() - started >= 1.0
    finally:
        manager.stop()
        runtime.stop()


def test_a_drain_is_applied_by_the_pod_worker_and_never_rewrites_an_ended_pod(provider):
    manager, sink = provider(StaticResolver())
    timed = pod("timed", ["sleep", "30"], activeDeadlineSeconds=1, terminationGracePeriodSeconds=1)
    worker = pod("worker", ["sleep", "30"], terminationGracePeriodSeconds=1)
    for body in (timed, worker):
        manager.upsert(body)
    wait_until(lambda: phase(manager, timed["metadata"]["uid"]) == "Failed", 15, "failed by its deadline")
    wait_until(lambda: phase(manager, worker["metadata"]["uid"]) == "Running", 10, "worker running")
    manager.end_all("WalltimeExpired", "the walltime is over", fast=False)
    assert not manager.all_stopped()  # asked, not yet applied: a drain never sees a pod as done too early
    wait_until(manager.all_stopped, 15, "every pod stopped")
    ended = manager.status(timed["metadata"]["uid"])[1]
    assert ended["reason"] == "DeadlineExceeded"  # ended before the drain: history is not rewritten
    assert not any(c["type"] == "DisruptionTarget" for c in ended["conditions"])
    drained = manager.status(worker["metadata"]["uid"])[1]
    assert (drained["phase"], drained["reason"]) == ("Failed", "WalltimeExpired")
    disruption = next(c for c in drained["conditions"] if c["type"] == "DisruptionTarget")
    assert disruption["reason"] == "TerminationByKubelet" and disruption["message"] == "the walltime is over"


class CountingManager(PodManager):
    """The real manager; counts its syncs per pod (to see which pods an input wakes)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.syncs = {}

    def _sync(self, uid):
        self.syncs[uid] = self.syncs.get(uid, 0) + 1
        super()._sync(uid)


def test_an_object_change_retries_the_pods_waiting_on_objects_and_no_running_pod(tmp_path):
    """A ConfigMap/Secret/token change wakes only pods whose containers wait on one: O(waiting), not a
    sync of every running pod on the node per object change (the 5000-pod superlinear path)."""
    holder = {}
    runtime = Runtime(tmp_path / "state", on_exit=lambda report: holder["manager"].on_exit(report))
    resolver = StaticResolver()
    manager = CountingManager(runtime, Workspace(str(tmp_path / "ws")), resolver, RecordingSink(),
                              pod_ip="10.0.0.9", home=str(tmp_path),
                              base_env={"PATH": os.environ["PATH"], "VKCMD_TEST": str(tmp_path)})
    holder["manager"] = manager
    runtime.start()
    manager.start()
    try:
        running = [pod(f"run-{i}", ["sleep", "60"]) for i in range(10)]
        for body in running:
            manager.upsert(body)
        for body in running:
            wait_until(lambda body=body: phase(manager, body["metadata"]["uid"]) == "Running", 10, "Running")
        waiting = pod("waits", ["true"],
                      volumes=[{"name": "cfg", "configMap": {"name": "late"}}])
        waiting["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/cfg"}]
        uid = waiting["metadata"]["uid"]
        manager.upsert(waiting)
        wait_until(lambda: (manager.status(uid) or ({}, {}))[1].get("containerStatuses", [{}])[0]
                   .get("state", {}).get("waiting", {}).get("reason") == "CreateContainerConfigError", 10,
                   "waiting on the ConfigMap")
        time.sleep(0.3)
        before = dict(manager.syncs)
        resolver.add({"kind": "ConfigMap", "metadata": {"name": "late"}, "data": {"k": "v"}})
        for _ in range(50):
            manager.object_changed("ConfigMap", "default", "late")
        # retried at once (CONFIG_RETRY is 10 s), and it runs to Succeeded
        wait_until(lambda: phase(manager, uid) == "Succeeded", 5, "the waiting pod retried at once")
        time.sleep(0.3)
        assert all(manager.syncs.get(b["metadata"]["uid"]) == before.get(b["metadata"]["uid"]) for b in running), \
            "an object change synced running pods"
        synced = manager.syncs[uid]
        manager.object_changed("Secret", "default", "other")  # the pod has run: it waits on nothing now
        time.sleep(0.3)
        assert manager.syncs[uid] == synced
    finally:
        manager.stop()
        for pid in processes_with({"VKCMD_TEST": str(tmp_path)}):
            os.kill(pid, 9)
        runtime.stop()


def test_a_deleted_pod_is_ended_once_even_when_its_dying_object_changes_again(provider):
    """After the clean-up and pod_gone, the API still holds the object until the DELETE: its MODIFIED
    (our own final status write) must not start a second record, a second final status and DELETE."""
    manager, sink = provider(StaticResolver())
    body = pod("long", ["sleep", "60"])
    uid = body["metadata"]["uid"]
    manager.upsert(body)
    wait_until(lambda: phase(manager, uid) == "Running", 10, "Running")
    deleting = {**body, "metadata": {**body["metadata"], "deletionTimestamp": "2026-11-27T00:00:01Z",
                                     "deletionGracePeriodSeconds": 30}}
    manager.upsert(deleting)
    wait_until(lambda: sink.gone, 10, "pod_gone")
    changed = len(sink.changed)
    manager.upsert({**deleting, "status": sink.gone[0][1]})  # MODIFIED: the terminated status written
    time.sleep(0.5)
    assert len(sink.gone) == 1 and len(sink.changed) == changed and manager.status(uid) is None
    manager.remove(deleting)  # DELETED: forgotten; a pod of that uid coming back is new to the node
    manager.upsert(body)
    wait_until(lambda: phase(manager, uid) == "Running", 10, "the same uid runs again after DELETED")
def test_an_object_change_retries_only_pods_still_waiting_to_start(provider, monkeypatch):
    """Issue 16: every token fetch (one per pod start) re-synced every running pod of the namespace
    (a started container keeps ContainerCreating as its last waiting reason): O(pods) per start."""
    manager, _ = provider(StaticResolver())
    bodies = [pod(f"run-{i}", ["sleep", "60"]) for i in range(3)]
    for body in bodies:
        manager.upsert(body)
    for body in bodies:
        wait_until(lambda: phase(manager, body["metadata"]["uid"]) == "Running", 10, "Running")
    queued = []
    add = manager._queue.add
    monkeypatch.setattr(manager._queue, "add", lambda key: (queued.append(key), add(key))[1])
    manager.object_changed("ServiceAccountToken", "default", "default")
    assert queued == []


def test_a_deleted_pods_directory_is_out_of_the_workspace_before_pod_gone_and_removed_after(provider, tmp_path):
    """Issue 16 (delete waves): the tree is moved out in one rename on the pod's path, its files
    removed by the pod-reclaim thread; what a stop left there is removed at the next start."""
    ws_root = tmp_path / "ws"
    leftover = ws_root / ".vkcmd-removed" / "default.old.0123456789ab" / "containers" / "c"
    leftover.mkdir(parents=True)
    (leftover / "stdout").write_text("from before a stop")
    seen = {}

    class Checking(RecordingSink):
        def pod_gone(self, pod, final_status):
            seen["dir"] = os.path.lexists(ws_root / "default" / pod["metadata"]["name"])
            super().pod_gone(pod, final_status)

    manager, sink = provider(StaticResolver(), sink=Checking())
    body = pod("deleted", ["sleep", "60"])
    manager.upsert(body)
    wait_until(lambda: phase(manager, body["metadata"]["uid"]) == "Running", 10, "Running")
    assert (ws_root / "default" / "deleted").is_dir()
    manager.upsert({**body, "metadata": {**body["metadata"], "deletionTimestamp": "2026-11-27T00:00:01Z",
                                         "deletionGracePeriodSeconds": 30}})
    wait_until(lambda: sink.gone, 10, "pod_gone")
    assert seen["dir"] is False
    wait_until(lambda: not os.listdir(ws_root / ".vkcmd-removed"), 10, "the detached directories removed")


def test_a_link_planted_where_deleted_pods_go_is_never_followed(provider, tmp_path):
    """A process of the node's user planted ``<root>/.vkcmd-removed`` as a link to a directory of its
    choosing: the deleted pod's directory is not moved there; it is removed in place, and the link's
    target keeps what it had."""
    ws_root = tmp_path / "ws"
    ws_root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("mine")
    os.symlink(elsewhere, ws_root / ".vkcmd-removed")
    manager, sink = provider(StaticResolver())
    body = pod("linked", ["sleep", "60"])
    manager.upsert(body)
    wait_until(lambda: phase(manager, body["metadata"]["uid"]) == "Running", 10, "Running")
    manager.upsert({**body, "metadata": {**body["metadata"], "deletionTimestamp": "2026-11-27T00:00:01Z",
                                         "deletionGracePeriodSeconds": 30}})
    wait_until(lambda: sink.gone, 10, "pod_gone")
    assert not os.path.lexists(ws_root / "default" / "linked")
    assert sorted(os.listdir(elsewhere)) == ["keep"] and (elsewhere / "keep").read_text() == "mine"
