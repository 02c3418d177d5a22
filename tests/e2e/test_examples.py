"""Every example pod, from kubectl apply to a correct final status, on a real vkcmd node."""

from __future__ import annotations

import os

import pytest
import yaml

from tests.e2e.node import EXAMPLES, Node, container_state, wait_for


@pytest.fixture(scope="module")
def node(control_plane, tmp_path_factory):
    running = Node(control_plane, tmp_path_factory.mktemp("vk"), name="vk-examples").start()
    yield running
    assert running.stop() == 0, running.log()


def apply(kubectl, text: str, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=text, check=True)


def test_secret_pod_runs_the_script_with_env_and_logs(node, kubectl, namespace):
    apply(kubectl, (EXAMPLES / "secret-pod.yaml").read_text(), namespace)
    pod = node.wait_phase("hello", namespace=namespace)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    state = container_state(pod, "main")["state"]["terminated"]
    assert state["exitCode"] == 0 and state["reason"] == "Completed"
    assert pod["status"]["podIP"] == "127.0.0.1" and pod["status"]["hostIP"] == "127.0.0.1"
    directory = node.container_dir("hello", "main", namespace)
    expected = f"hello from hello on {node.name}, greeting=bonjour, home={node.home}/work\n"
    assert (directory / "stdout").read_text() == expected
    assert (directory / "stderr").read_text() == "this goes to stderr\n"
    script = directory / "scripts" / "hello.sh"
    assert script.exists() and oct(script.stat().st_mode & 0o777) == "0o600"
    logs = kubectl("logs", "-n", namespace, "hello", check=True).stdout
    assert logs == expected + "this goes to stderr\n"
    assert container_state(pod, "main")["containerID"] == "vkcmd://" + (directory / "pgid").read_text().strip()


def test_stress_pod_burns_and_reports(node, kubectl, namespace):
    text = (EXAMPLES / "stress-pod.yaml").read_text().replace('args: ["30", "2"]', 'args: ["2", "2"]')
    assert 'args: ["2", "2"]' in text
    apply(kubectl, text, namespace)
    running = node.wait_phase("p1", phases=("Running",), namespace=namespace)
    pgid = int((node.container_dir("p1", "c1", namespace) / "pgid").read_text())
    assert os.getpgid(pgid) == pgid
    pod = node.wait_phase("p1", namespace=namespace)
    assert pod["status"]["phase"] == "Succeeded"
    assert running["status"]["startTime"] == pod["status"]["startTime"]
    assert (node.container_dir("p1", "c1", namespace) / "stress" / "job1" / "burn.sh").exists()
    assert kubectl("logs", "-n", namespace, "p1", check=True).stdout == "burned 2 workers for 2 s\n"


def test_affinity_pod_is_placed_by_jiriaf_labels(node, kubectl, namespace):
    text = (EXAMPLES / "affinity-pod.yaml").read_text().replace('["sleep", "20"]', '["sleep", "1"]')
    # the seed's selector kubernetes.io/role=agent: a node identity may not set that label (NodeRestriction),
    # so the operator labels the node once, as the example's comment says
    kubectl("label", "node", node.name, "kubernetes.io/role=agent", "--overwrite", check=True)
    apply(kubectl, text, namespace)
    pod = node.wait_phase("placed", namespace=namespace)
    assert pod["spec"]["nodeName"] == node.name
    assert pod["status"]["phase"] == "Succeeded"


def test_deployment_pods_run_ready_and_go_away_with_it(node, kubectl, namespace):
    apply(kubectl, (EXAMPLES / "deployment.yaml").read_text(), namespace)

    def ready_pods():
        out = kubectl("get", "pods", "-n", namespace, "-l", "app=ticker", "-o", "yaml", check=True).stdout
        items = yaml.safe_load(out)["items"]
        ready = [p for p in items if p["status"].get("phase") == "Running" and any(
            c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
        return ready if len(ready) == 3 else None

    pods = wait_for(ready_pods, timeout=20, what="3 ready ticker pods")
    for pod in pods:
        ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
        assert ready["lastTransitionTime"] >= pod["status"]["startTime"]
    out = kubectl("get", "deploy", "ticker", "-n", namespace, "-o", "jsonpath={.status.readyReplicas}").stdout
    assert wait_for(lambda: kubectl("get", "deploy", "ticker", "-n", namespace, "-o",
                                    "jsonpath={.status.readyReplicas}").stdout == "3", what="readyReplicas 3") or out
    uids = [p["metadata"]["uid"] for p in pods]
    assert len(node.processes()) >= 3  # the ticker scripts run
    kubectl("delete", "deployment", "ticker", "-n", namespace, check=True)
    wait_for(lambda: not yaml.safe_load(kubectl("get", "pods", "-n", namespace, "-l", "app=ticker", "-o",
                                                "yaml", check=True).stdout)["items"], timeout=40,
             what="ticker pods gone")
    for uid in uids:
        assert not (node.home / namespace / uid).exists()
    assert not any((node.home / namespace).glob("ticker-*"))


def test_sidecar_pod_serves_readiness_and_leaves_a_termination_message(node, kubectl, namespace):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    text = (EXAMPLES / "sidecar-pod.yaml").read_text().replace("8089", port)
    apply(kubectl, text, namespace)

    def ready():
        pod = node.pod("sidecar-demo", namespace) or {}
        return pod if any(c["type"] == "Ready" and c["status"] == "True"
                          for c in pod.get("status", {}).get("conditions") or []) else None

    running = wait_for(ready, timeout=40, what="sidecar-demo Ready (sidecar and main probed over HTTP)")
    assert running["status"]["phase"] == "Running"
    assert running["status"]["initContainerStatuses"][0]["started"] is True
    pod = node.wait_phase("sidecar-demo", namespace=namespace, timeout=40)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    jsonpath = "-o=jsonpath={.status.containerStatuses[0].state.terminated.message}"
    message = kubectl("get", "pod", "sidecar-demo", "-n", namespace, jsonpath, check=True).stdout
    assert message.strip() == "processed 3 items"
    assert "terminated" in pod["status"]["initContainerStatuses"][0]["state"]  # the sidecar stopped after main
