"""pods/log is proxied to the node's kubelet (here a stub HTTPS kubelet: a test double of an external peer)."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .stub_kubelet import StubKubelet


@pytest.fixture(scope="module")
def kubelet(control_plane, kube_client, tmp_path_factory):
    stub = StubKubelet(control_plane, tmp_path_factory.mktemp("kubelet"))
    core = client.CoreV1Api(kube_client)
    core.create_node({"metadata": {"name": "stub-node"},
                      "spec": {"taints": [{"key": "test", "effect": "NoSchedule"}]},
                      "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                 "daemonEndpoints": {"kubeletEndpoint": {"Port": stub.port}}}})
    yield stub
    core.delete_node("stub-node")
    stub.stop()


@pytest.fixture(scope="module")
def core(kube_client):
    return client.CoreV1Api(kube_client)


def bound_pod(core, namespace, name, containers=("main",)):
    core.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": {
        "nodeName": "stub-node", "containers": [{"name": c, "image": "none"} for c in containers]}})


def test_log_is_proxied_with_the_kubelet_client_identity(core, kubelet, namespace):
    bound_pod(core, namespace, "lp")
    text = core.read_namespaced_pod_log("lp", namespace, tail_lines=5, timestamps=True)
    assert text == "main line 0\nmain line 1\n"
    path, cn, query = kubelet.calls[-1]
    assert path == f"/containerLogs/{namespace}/lp/main"
    assert cn == "kube-apiserver-kubelet-client"
    assert query == {"tailLines": "5", "timestamps": "true"}


def test_follow_streams_as_it_arrives(core, kubelet, namespace):
    bound_pod(core, namespace, "lf")
    resp = core.read_namespaced_pod_log("lf", namespace, follow=True, _preload_content=False)
    try:
        start = time.monotonic()
        first = resp.read(len("main line 0\n"))
        first_at = time.monotonic() - start
        rest = resp.read()
    finally:
        resp.release_conn()
    assert first == b"main line 0\n" and first_at < 0.5  # not buffered until the end (~0.9 s)
    assert rest == b"main line 1\nmain line 2\n"


def test_several_containers_need_a_name(core, kubelet, namespace):
    bound_pod(core, namespace, "two", containers=("a", "b"))
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_pod_log("two", namespace)
    assert ei.value.status == 400
    assert json.loads(ei.value.body)["message"] == \
        "a container name must be specified for pod two, choose one of: [a b]"
    assert core.read_namespaced_pod_log("two", namespace, container="b") == "b line 0\nb line 1\n"


def test_kubelet_errors_pass_through(core, kubelet, namespace):
    bound_pod(core, namespace, "missing")
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_pod_log("missing", namespace)
    assert ei.value.status == 404
    assert "pod not found on this node" in json.loads(ei.value.body)["message"]


def test_unbound_pod_has_no_logs(core, namespace):
    core.create_namespaced_pod(namespace, {"metadata": {"name": "nobind"},
                                           "spec": {"containers": [{"name": "c", "image": "none"}]}})
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_pod_log("nobind", namespace)
    assert ei.value.status == 400
