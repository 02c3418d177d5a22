"""A kubectl session against kubelite: the real /usr/bin/kubectl, asserting on output and exit codes."""

from __future__ import annotations

import filecmp
import time
from pathlib import Path

import pytest
from kubernetes import client

from .stub_kubelet import StubKubelet

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def session_ns(kube_client, kubectl, ensure_sa):
    core = client.CoreV1Api(kube_client)
    kubectl("create", "namespace", "kc", check=True)
    ensure_sa("kc")
    yield "kc"
    for pod in core.list_namespaced_pod("kc").items:
        core.delete_namespaced_pod(pod.metadata.name, "kc", grace_period_seconds=0)
    kubectl("delete", "namespace", "kc", "--wait=false")


def test_examples_are_the_shared_ones():
    shared = Path("/work/shared/examples")
    if not shared.is_dir():
        pytest.skip("no shared examples on this machine")
    names = sorted(p.name for p in shared.glob("*.yaml"))
    assert set(names) <= {p.name for p in EXAMPLES.glob("*.yaml")}  # the project may add its own beside them
    for n in names:
        assert filecmp.cmp(shared / n, EXAMPLES / n, shallow=False), n


def test_get_nodes(kubectl, kube_client):
    client.CoreV1Api(kube_client).create_node({
        "metadata": {"name": "kc-node", "labels": {"kubernetes.io/role": "agent"}},
        "spec": {"taints": [{"key": "test", "effect": "NoSchedule"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "10.1.2.3"}],
                   "nodeInfo": {"kubeletVersion": "vkcmd/0.1.0", "osImage": "Linux", "architecture": "amd64",
                                "bootID": "", "containerRuntimeVersion": "vkcmd://0.1.0", "kernelVersion": "6.1",
                                "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux",
                                "systemUUID": ""}}})
    try:
        out = kubectl("get", "nodes", check=True).stdout
        lines = out.splitlines()
        assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        row = next(line.split() for line in lines if line.startswith("kc-node"))
        assert row[1] == "Ready" and row[2] == "agent" and row[4] == "vkcmd/0.1.0"
        wide = kubectl("get", "nodes", "-o", "wide", check=True).stdout
        assert "INTERNAL-IP" in wide and "10.1.2.3" in wide
    finally:
        client.CoreV1Api(kube_client).delete_node("kc-node")


def test_apply_examples_without_disabling_validation(kubectl, session_ns):
    for name in ("stress-pod.yaml", "secret-pod.yaml", "deployment.yaml"):
        proc = kubectl("apply", "-n", session_ns, "-f", str(EXAMPLES / name))
        assert proc.returncode == 0, proc.stderr
    out = kubectl("apply", "-n", session_ns, "-f", str(EXAMPLES / "stress-pod.yaml")).stdout
    assert "configmap/burn unchanged" in out
    out = kubectl("apply", "-n", session_ns, "--server-side", "-f", str(EXAMPLES / "affinity-pod.yaml"),
                  check=True).stdout
    assert "pod/placed serverside-applied" in out


def test_get_pods_wide_and_configmaps(kubectl, session_ns):
    out = kubectl("get", "pods", "-n", session_ns, "-o", "wide", check=True).stdout
    header = out.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and "NODE" in header and "IP" in header
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert {"p1", "hello", "placed"} <= set(rows)
    assert rows["p1"][1] == "0/1"
    out = kubectl("get", "configmaps", "-n", session_ns, check=True).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["burn"][1] == "1" and rows["greetings"][1] == "1"
    out = kubectl("get", "deploy", "ticker", "-n", session_ns, "-o", "jsonpath={.spec.replicas}", check=True).stdout
    assert out == "3"
    out = kubectl("get", "secret", "hello-script", "-n", session_ns, "-o", "jsonpath={.data.hello\\.sh}",
                  check=True).stdout
    assert out  # stringData was folded into data


def test_delete_pod_without_waiting(kubectl, session_ns):
    proc = kubectl("delete", "pod", "p1", "-n", session_ns, "--wait=false", check=True)
    assert 'pod "p1" deleted' in proc.stdout
    assert "p1" not in kubectl("get", "pods", "-n", session_ns, "-o", "name", check=True).stdout


def test_not_found_exit_code(kubectl, session_ns):
    proc = kubectl("get", "pod", "nope", "-n", session_ns)
    assert proc.returncode == 1
    assert 'Error from server (NotFound): pods "nope" not found' in proc.stderr


def test_logs_through_the_stub_kubelet(kubectl, control_plane, kube_client, session_ns, tmp_path):
    stub = StubKubelet(control_plane, tmp_path)
    core = client.CoreV1Api(kube_client)
    try:
        core.create_node({"metadata": {"name": "kc-logs"},
                          "spec": {"taints": [{"key": "test", "effect": "NoSchedule"}]},
                          "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                     "daemonEndpoints": {"kubeletEndpoint": {"Port": stub.port}}}})
        core.create_namespaced_pod(session_ns, {"metadata": {"name": "logme"}, "spec": {
            "nodeName": "kc-logs", "containers": [{"name": "main", "image": "none"}]}})
        proc = kubectl("logs", "logme", "-n", session_ns, "--tail=3", check=True)
        assert proc.stdout == "main line 0\nmain line 1\n"
        assert stub.calls[-1][2]["tailLines"] == "3"
        start = time.monotonic()
        proc = kubectl("logs", "-f", "logme", "-n", session_ns, check=True)
        assert proc.stdout == "main line 0\nmain line 1\nmain line 2\n" and time.monotonic() - start > 0.5
    finally:
        core.delete_namespaced_pod("logme", session_ns, grace_period_seconds=0)
        core.delete_node("kc-logs")
        stub.stop()


def test_auth_can_i(kubectl, control_plane, tmp_path):
    proc = kubectl("auth", "can-i", "create", "pods")
    assert proc.returncode == 0 and proc.stdout.strip() == "yes"
    path = control_plane.write_kubeconfig(str(tmp_path / "dave.kubeconfig"), "dave", ())
    dave = kubectl.with_kubeconfig(path)
    proc = dave("auth", "can-i", "delete", "nodes")
    assert proc.returncode == 1 and proc.stdout.strip() == "no"
    proc = dave("get", "pods", "-n", "default")
    assert proc.returncode == 1 and "Forbidden" in proc.stderr and 'User "dave"' in proc.stderr


def test_scale_deployment(kubectl, session_ns):
    kubectl("scale", "deployment", "ticker", "-n", session_ns, "--replicas=1", check=True)
    out = kubectl("get", "deploy", "ticker", "-n", session_ns, "-o", "jsonpath={.spec.replicas}", check=True).stdout
    assert out == "1"


def test_reapply_unchanged_pod(kubectl, session_ns):
    proc = kubectl("apply", "-n", session_ns, "-f", str(EXAMPLES / "secret-pod.yaml"))
    assert proc.returncode == 0, proc.stderr
    # kubectl's 3-way patch replaces the toleration list (it has no merge key), so it may say
    # "configured"; what matters is that admission re-defaults it and nothing is refused.
    assert "pod/hello unchanged" in proc.stdout or "pod/hello configured" in proc.stdout, proc.stdout
    out = kubectl("get", "pod", "hello", "-n", session_ns, "-o", "jsonpath={.spec.tolerations[*].key}",
                  check=True).stdout
    assert "node.kubernetes.io/not-ready" in out and "node.kubernetes.io/unreachable" in out
