"""metrics.k8s.io served by kubelite from a real vkcmd node's /metrics/resource: kubectl top and the Python client."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.e2e.node import Node, pod_manifest, wait_for
from tools.kubelite.quantity import value as parse_quantity


@pytest.fixture(scope="module")
def node(control_plane, tmp_path_factory):
    running = Node(control_plane, tmp_path_factory.mktemp("vk"), name="vk-top").start()
    yield running
    running.stop()


@pytest.fixture
def pods(node, namespace):
    node.create(pod_manifest("busy", ["sh", "-c", "while :; do :; done"], node=node.name), namespace)
    node.create(pod_manifest("idle", ["sh", "-c", "exec sleep 600"], node=node.name), namespace)
    for name in ("busy", "idle"):
        node.wait_phase(name, ("Running",), namespace, timeout=60)
    yield namespace
    for name in ("busy", "idle"):
        node.delete(name, namespace, grace=0)


def _top_rows(kubectl, *args):
    proc = kubectl("top", *args, "--no-headers", timeout=60)
    if proc.returncode != 0:
        return None
    return {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines() if line.strip()}


def test_kubectl_top_pods_shows_the_busy_pod_burning_cpu(kubectl, pods):
    def both():
        rows = _top_rows(kubectl, "pods", "-n", pods)
        return rows if rows and {"busy", "idle"} <= set(rows) and parse_quantity(rows["busy"][0]) > 0.05 else None
    rows = wait_for(both, timeout=60, interval=1, what="kubectl top pods listing busy with CPU")
    assert rows["busy"][1].endswith("Mi") and rows["idle"][1].endswith("Mi")
    assert parse_quantity(rows["busy"][0]) > parse_quantity(rows["idle"][0])


def test_kubectl_top_pods_label_selector(kubectl, node, namespace):
    manifest = pod_manifest("labelled", ["sh", "-c", "exec sleep 600"], node=node.name)
    manifest["metadata"]["labels"] = {"app": "top"}
    node.create(manifest, namespace)
    node.create(pod_manifest("other", ["sh", "-c", "exec sleep 600"], node=node.name), namespace)
    for name in ("labelled", "other"):
        node.wait_phase(name, ("Running",), namespace, timeout=60)
    try:
        rows = wait_for(lambda: _top_rows(kubectl, "pods", "-n", namespace, "-l", "app=top"), timeout=60,
                        interval=1, what="kubectl top pods -l")
        assert set(rows) == {"labelled"}
    finally:
        for name in ("labelled", "other"):
            node.delete(name, namespace, grace=0)


def test_kubectl_top_nodes_lists_the_node(kubectl, node):
    rows = wait_for(lambda: (lambda r: r if r and node.name in r else None)(_top_rows(kubectl, "nodes")),
                    timeout=60, interval=1, what="kubectl top nodes")
    cpu, _, memory = rows[node.name][:3]
    assert cpu.endswith("m") and parse_quantity(memory) > 0


def test_python_client_reads_pod_metrics(kube_client, pods):
    api = client.CustomObjectsApi(kube_client)

    def busy():
        items = api.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", pods, "pods")["items"]
        return items if {"busy", "idle"} <= {i["metadata"]["name"] for i in items} else None
    items = {i["metadata"]["name"]: i for i in wait_for(busy, timeout=60, interval=1, what="PodMetrics")}
    m = items["busy"]
    assert m["kind"] == "PodMetrics" and m["metadata"]["namespace"] == pods
    assert [c["name"] for c in m["containers"]] == ["c"]
    assert parse_quantity(m["containers"][0]["usage"]["cpu"]) > 0
    assert parse_quantity(m["containers"][0]["usage"]["memory"]) > 0
    assert m["window"].endswith("s") and float(m["window"][:-1]) > 0 and m["timestamp"].endswith("Z")
    one = api.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", pods, "pods", "idle")
    assert one["metadata"]["name"] == "idle"
    with pytest.raises(client.exceptions.ApiException) as missing:
        api.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", pods, "pods", "nope")
    assert missing.value.status == 404
