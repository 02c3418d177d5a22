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


# -- metrics-server's rules on the exposition vkcmd serves (vkcmd/kubeletapi/resource_metrics.py) -----------

def _exposition(pods: dict, node=(10.0, 4096, 1000.0)) -> str:
    """Text in the kubelet's format: ``pods`` maps (pod, container) to (cpu seconds, bytes, unix time)."""
    def family(name, kind, rows):
        return [f"# TYPE {name} {kind}"] + [f"{name}{labels} {value} {int(ts * 1000)}" for labels, value, ts in rows]
    labelled = [(f'{{container="{c}",pod="{p}",namespace="ns"}}', v) for (p, c), v in pods.items()]
    lines = family("container_cpu_usage_seconds_total", "counter", [(lb, v[0], v[2]) for lb, v in labelled])
    lines += family("container_memory_working_set_bytes", "gauge", [(lb, v[1], v[2]) for lb, v in labelled])
    lines += family("node_cpu_usage_seconds_total", "counter", [("", node[0], node[2])])
    lines += family("node_memory_working_set_bytes", "gauge", [("", node[1], node[2])])
    return "\n".join(lines + ["# TYPE resource_scrape_error gauge", "resource_scrape_error 0"]) + "\n"


def test_rate_is_the_counter_delta_over_the_time_between_samples():
    from tools.kubelite.metricsscrape import parse, rate

    a = parse(_exposition({("p", "c"): (1.0, 2048, 1000.0)}, node=(10.0, 4096, 1000.0)))
    b = parse(_exposition({("p", "c"): (1.5, 3072, 1002.0)}, node=(14.0, 8192, 1002.0)))
    u = rate(a.containers[("ns", "p", "c")], b.containers[("ns", "p", "c")])
    assert (u.nanocores, u.memory, u.time, u.window) == (250_000_000, 3072, 1002.0, 2.0)
    n = rate(a.node, b.node)
    assert (n.nanocores, n.memory) == (2_000_000_000, 8192)
    assert rate(b.node, a.node) is None  # time went back / counter reset: no rate


def test_a_zero_reading_drops_the_whole_pod_and_a_zero_node_drops_the_node():
    from tools.kubelite.metricsscrape import parse

    s = parse(_exposition({("p", "a"): (1.0, 2048, 1000.0), ("p", "b"): (0.0, 2048, 1000.0),
                           ("q", "a"): (1.0, 2048, 1000.0)}, node=(10.0, 0, 1000.0)))
    assert set(s.containers) == {("ns", "q", "a")}
    assert s.node is None


def test_metrics_are_authorized_by_rbac(control_plane, kube_client, kubectl, node, namespace, tmp_path):
    """A user with no grant gets 403; a Role on metrics.k8s.io pods lets it list the namespace's PodMetrics."""
    dave = kubectl.with_kubeconfig(control_plane.write_kubeconfig(str(tmp_path / "dave.kubeconfig"), "dave", ()))
    denied = dave("top", "pods", "-n", namespace)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    rbac = client.RbacAuthorizationV1Api(kube_client)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "top"}, "rules": [
        {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "top"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "top"},
        "subjects": [{"kind": "User", "name": "dave", "apiGroup": "rbac.authorization.k8s.io"}]})
    allowed = wait_for(lambda: (lambda p: p if p.returncode == 0 or "forbidden" not in p.stderr.lower() else None)(
        dave("top", "pods", "-n", namespace)), timeout=10, interval=0.5, what="RBAC grant to take effect")
    assert "forbidden" not in allowed.stderr.lower(), allowed.stderr


def test_a_pod_whose_reading_did_not_move_since_the_last_scrape_stays_listed():
    """The kubelet refreshes pod readings less often than the node's (vkcmd: a paced background scan);
    a scrape between two pod readings pairs the pod with its reading before, as metrics-server's storage
    does, so the pod does not drop out of metrics.k8s.io (before: 'kubectl top pods' said 'metrics not
    available yet' right after the same pod had been listed)."""
    from tools.kubelite.metricsapi import MetricsApi
    from tools.kubelite.metricsscrape import parse, rate

    readings = iter([  # (pod cpu s, pod time), (node cpu s, node time)
        ((1.0, 1000.0), (10.0, 1000.0)),
        ((1.0, 1000.0), (11.0, 1001.0)),  # the pod's reading did not move
        ((2.0, 1002.0), (12.0, 1002.0)),
        ((2.0, 1002.0), (13.0, 1003.0)),  # nor here
        ((2.0, 1002.0), (14.0, 1004.0)),  # nor here
    ])

    def fetch(node, ctx):
        (cpu, at), (node_cpu, node_at) = next(readings)
        return parse(_exposition({("p", "c"): (cpu, 2048, at)}, node=(node_cpu, 4096, node_at)))

    metrics = MetricsApi(None, None, fetch=fetch)
    node = {"metadata": {"name": "n"}}
    pod_rates = []
    for _ in range(5):
        metrics._scrape(node)
        kept = metrics._samples["n"]
        pair = (kept[0][1], kept[-1][1]) if len(kept) == 2 else None
        pod_rates.append(pair and rate(pair[0].containers.get(("ns", "p", "c")), pair[1].containers.get(("ns", "p", "c"))))
    assert pod_rates[:2] == [None, None]  # no two readings of the pod yet
    assert [(u.nanocores, u.time, u.window) for u in pod_rates[2:]] == [(500_000_000, 1002.0, 2.0)] * 3
