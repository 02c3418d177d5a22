"""Draining a real node: walltime expiry and signals end every pod with a reason, processes and all."""

from __future__ import annotations

import signal
import time

from tests.e2e.node import Node, container_state, pod_manifest, wait_for


def _node_ready_condition(node):
    obj = node.client.get(f"/api/v1/nodes/{node.name}")
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready"), obj


def test_walltime_expiry_drains_pods_and_exits(control_plane, tmp_path, namespace):
    node = Node(control_plane, tmp_path, name="vk-wall", JIRIAF_WALLTIME="64", VK_DRAIN_MARGIN="60").start()
    try:
        manifest = pod_manifest("worker", ["sleep", "1000"], terminationGracePeriodSeconds=2)
        node.create(manifest, namespace)
        node.create(pod_manifest("done-before", ["true"]), namespace)
        node.wait_phase("done-before", phases=("Succeeded",), namespace=namespace)
        node.wait_phase("worker", phases=("Running",), namespace=namespace)
        code = node.process.wait(timeout=30)
        assert code == 0, node.log()
    finally:
        node.stop()
    pod = node.pod("worker", namespace)
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "WalltimeExpired")
    conditions = {c["type"]: c for c in pod["status"]["conditions"]}
    disruption = conditions["DisruptionTarget"]  # a Job's podFailurePolicy can tell a drain from a failure
    assert (disruption["status"], disruption["reason"]) == ("True", "TerminationByKubelet")
    assert conditions["PodReadyToStartContainers"]["status"] == "False"  # its processes are gone
    finished = node.pod("done-before", namespace)["status"]
    assert finished["phase"] == "Succeeded" and not finished.get("reason")  # history is not rewritten
    assert not any(c["type"] == "DisruptionTarget" for c in finished["conditions"])
    assert container_state(pod)["state"]["terminated"]["reason"] in ("WalltimeExpired", "Error")
    ready, obj = _node_ready_condition(node)
    assert (ready["status"], ready["reason"]) == ("False", "WalltimeExpired")
    assert obj["spec"]["unschedulable"] is True
    assert "from=Draining to=Expired" in node.log()
    assert not node.processes()


def test_second_sigterm_skips_the_grace_period(control_plane, tmp_path, namespace):
    node = Node(control_plane, tmp_path, name="vk-hurry").start()
    try:
        stubborn = pod_manifest("stubborn", ["sh", "-c", "trap '' TERM; while :; do sleep 0.2; done"],
                                terminationGracePeriodSeconds=120)
        node.create(stubborn, namespace)
        node.wait_phase("stubborn", phases=("Running",), namespace=namespace)
        started = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        wait_for(lambda: "from=Ready to=Draining" in node.log(), what="draining")
        time.sleep(1.0)
        assert node.process.poll() is None  # still waiting for the grace period
        node.process.send_signal(signal.SIGTERM)
        code = node.process.wait(timeout=20)
        assert code == 0 and time.monotonic() - started < 20, node.log()
    finally:
        node.stop()
    pod = node.pod("stubborn", namespace)
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "Shutdown")
    assert not node.processes()
