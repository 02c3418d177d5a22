"""Jobs on real vkcmd nodes: the example Job to 8/8, and drains that a podFailurePolicy ignores or counts."""

from __future__ import annotations

import json
import signal

import yaml

from tests.e2e.node import EXAMPLES, Node, wait_for


def job_status(kubectl, namespace, name) -> dict:
    out = kubectl("get", "job", name, "-n", namespace, "-o", "json", check=True).stdout
    return json.loads(out).get("status") or {}


def job_pods(kubectl, namespace, name) -> list[dict]:
    out = kubectl("get", "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={name}", "-o", "json",
                  check=True).stdout
    return json.loads(out)["items"]


def condition(status: dict, ctype: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == ctype and c["status"] == "True"), None)


def test_example_job_completes_8_of_8(control_plane, kubectl, tmp_path, namespace):
    node = Node(control_plane, tmp_path, name="vk-jobs").start()
    try:
        check_example_job(node, kubectl, namespace)
    finally:
        assert node.stop() == 0, node.log()


def check_example_job(node, kubectl, namespace) -> None:
    """examples/job.yaml (parts shortened to 1 s) on ``node``: 8 of 8 complete, 4 at a time, logs readable."""
    text = (EXAMPLES / "job.yaml").read_text().replace('args: ["3"]', 'args: ["1"]')
    assert 'args: ["1"]' in text
    kubectl("apply", "-n", namespace, "-f", "-", input=text, check=True)
    peak = 0

    def complete():
        nonlocal peak
        running = [p for p in job_pods(kubectl, namespace, "work") if p["status"].get("phase") == "Running"]
        peak = max(peak, len(running))
        status = job_status(kubectl, namespace, "work")
        return status if condition(status, "Complete") else None

    status = wait_for(complete, timeout=120, interval=0.5, what="job work Complete")
    assert status["succeeded"] == 8 and not status.get("failed") and status["completedIndexes"] == "0-7"
    assert 1 <= peak <= 4  # parallelism 4
    pods = job_pods(kubectl, namespace, "work")
    assert len(pods) == 8 and all(p["spec"]["nodeName"] == node.name for p in pods)
    index = pods[0]["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
    log = kubectl("logs", "-n", namespace, pods[0]["metadata"]["name"], check=True).stdout
    assert log.startswith(f"part {index} done on "), log


def _drained_job(name: str, ignore: bool) -> str:
    """A Job whose pod sleeps on the first node (drained) and finishes at once on any other."""
    spec = {"backoffLimit": 0, "template": {"spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
        "tolerations": [{"key": "virtual-kubelet.io/provider", "value": "mock", "effect": "NoSchedule"}],
        "nodeSelector": {"type": "virtual-kubelet"},
        "containers": [{"name": "c", "image": "none",
                        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                        "command": ["sh", "-c", 'if [ "$NODE" = vk-drained ]; then exec sleep 1000; fi']}]}}}
    if ignore:
        spec["podFailurePolicy"] = {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}
    return yaml.safe_dump({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec})


def test_drain_ignored_by_pod_failure_policy_and_counted_without(control_plane, kubectl, tmp_path, namespace):
    first = Node(control_plane, tmp_path / "a", name="vk-drained").start()
    second = None
    try:
        kubectl("apply", "-n", namespace, "-f", "-", input=_drained_job("tolerant", True), check=True)
        kubectl("apply", "-n", namespace, "-f", "-", input=_drained_job("strict", False), check=True)
        for name in ("tolerant", "strict"):
            wait_for(lambda: any(p["status"].get("phase") == "Running" for p in job_pods(kubectl, namespace, name)),
                     timeout=30, what=f"{name} running")
        first.process.send_signal(signal.SIGTERM)  # a drain: the pods end with DisruptionTarget
        assert first.process.wait(timeout=60) == 0, first.log()
        drained = [p for n in ("tolerant", "strict") for p in job_pods(kubectl, namespace, n)
                   if p["spec"].get("nodeName") == "vk-drained"]
        assert len(drained) == 2 and all(p["status"]["phase"] == "Failed" for p in drained)
        assert all(any(c["type"] == "DisruptionTarget" for c in p["status"]["conditions"]) for p in drained)
        strict = wait_for(lambda: (lambda s: s if condition(s, "Failed") else None)(
            job_status(kubectl, namespace, "strict")), timeout=30, what="strict Failed")
        assert strict["failed"] == 1 and condition(strict, "Failed")["reason"] == "BackoffLimitExceeded"
        second = Node(control_plane, tmp_path / "b", name="vk-second").start()
        tolerant = wait_for(lambda: (lambda s: s if condition(s, "Complete") else None)(
            job_status(kubectl, namespace, "tolerant")), timeout=60, what="tolerant Complete on the second node")
        assert tolerant["succeeded"] == 1 and not tolerant.get("failed")
        pods = job_pods(kubectl, namespace, "tolerant")
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["vk-drained", "vk-second"]
        assert len(job_pods(kubectl, namespace, "strict")) == 1  # a failed job is not re-tried
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0, second.log()
