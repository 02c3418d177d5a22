"""Node lifecycle with a short lease grace, and starting/stopping the controllers."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client, config

from tests.kubelite.test_controllers import make_node, now, pod_body, wait_for
from tools.kubelite import ControlPlane
from tools.kubelite import controllers

GRACE = 1.0
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    with ControlPlane(str(tmp_path_factory.mktemp("kubelite-lifecycle")), controllers=False) as cp:
        running = controllers.start(cp.kubeconfig, lease_grace=GRACE)
        try:
            yield cp, running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def api(plane):
    cp, _ = plane
    api_client = config.new_client_from_config(config_file=cp.kubeconfig)
    yield client.CoreV1Api(api_client), client.CoordinationV1Api(api_client)
    api_client.close()


def taints(core, name):
    return {(t.key, t.effect): t for t in core.read_node(name).spec.taints or []}


def ready_condition(core, name):
    return next(c for c in core.read_node(name).status.conditions if c.type == "Ready")


def renew(coord, name):
    coord.patch_namespaced_lease(name, "kube-node-lease", {"spec": {"renewTime": now(True)}})


def test_expired_lease_marks_node_unknown_and_unreachable(api):
    core, coord = api
    make_node(core, coord, "fading")
    stop = threading.Event()

    def kubelet():  # renews the lease like a kubelet, until told to stop
        while not stop.wait(GRACE / 4):
            renew(coord, "fading")

    beat = threading.Thread(target=kubelet, name="test-lease-renewer")
    beat.start()
    try:
        time.sleep(GRACE * 2)
        assert ready_condition(core, "fading").status == "True"
        assert not taints(core, "fading")
    finally:
        stop.set()
        beat.join()
    wait_for(lambda: ready_condition(core, "fading").status == "Unknown", timeout=GRACE + 5, what="Unknown")
    cond = ready_condition(core, "fading")
    assert cond.reason == "NodeStatusUnknown"
    assert cond.message == "Kubelet stopped posting node status."
    found = wait_for(lambda: len(taints(core, "fading")) == 2 and taints(core, "fading"), what="taints")
    assert set(found) == {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
    assert all(t.time_added is not None for t in found.values())

    # the scheduler stays away from it
    core.create_namespaced_pod("default", pod_body("avoid"))
    time.sleep(0.3)
    pod = core.read_namespaced_pod("avoid", "default")
    assert pod.spec.node_name is None
    cond = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert "1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }" in cond.message

    # the kubelet comes back: lease renewed -> taints removed, then it reports Ready itself
    renew(coord, "fading")
    wait_for(lambda: not taints(core, "fading"), what="taints removed")
    core.patch_node_status("fading", {"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now(),
         "lastTransitionTime": now()}]}})
    renew(coord, "fading")
    assert wait_for(lambda: core.read_namespaced_pod("avoid", "default").spec.node_name) == "fading"
    core.delete_node("fading")


def test_not_ready_node_is_tainted_not_ready(api):
    core, coord = api
    make_node(core, coord, "draining")
    core.patch_node_status("draining", {"status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "Shutdown", "lastHeartbeatTime": now()}]}})
    renew(coord, "draining")
    found = wait_for(lambda: taints(core, "draining"), what="not-ready taints")
    assert set(found) <= {(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")}
    core.patch_node_status("draining", {"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now()}]}})
    renew(coord, "draining")
    wait_for(lambda: not taints(core, "draining"), what="not-ready taints removed")
    core.delete_node("draining")


def test_stop_ends_every_thread(plane):
    cp, _ = plane
    before = set(threading.enumerate())
    running = controllers.start(cp.kubeconfig, lease_grace=GRACE, scheduler=False)
    try:
        assert running.wait_synced(5.0)
        ours = ("kubelite-informer-", "kubelite-events-", "kubelite-deployments", "kubelite-nodelifecycle",
                "kubelite-namespaces", "kubelite-gc", "kubelite-scheduler")
        mine = [t for t in threading.enumerate() if t not in before and t.name.startswith(ours)]
        names = {t.name for t in mine}
        assert {"kubelite-deployments", "kubelite-nodelifecycle", "kubelite-namespaces", "kubelite-gc"} <= names
        assert "kubelite-scheduler" not in names
        assert any(n.startswith("kubelite-informer-") for n in names)
    finally:
        started = time.monotonic()
        running.stop()
    assert time.monotonic() - started < 5.0
    assert [t.name for t in mine if t.is_alive()] == []
