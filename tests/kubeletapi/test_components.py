"""metrics-server/components.yaml: every document parses, and metrics-server is told how to reach vkcmd."""

from __future__ import annotations

from pathlib import Path

import yaml

MANIFEST = Path(__file__).resolve().parents[2] / "metrics-server" / "components.yaml"
REQUIRED_ARGS = {"--kubelet-use-node-status-port", "--kubelet-insecure-tls",
                 "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname", "--cert-dir=/tmp",
                 "--secure-port=10250", "--metric-resolution=15s"}


def documents() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d is not None]


def by_kind(kind: str) -> list[dict]:
    return [d for d in documents() if d["kind"] == kind]


def test_every_document_is_a_named_object():
    kinds = []
    for document in documents():
        assert {"apiVersion", "kind", "metadata"} <= set(document), document
        assert document["metadata"]["name"]
        kinds.append(document["kind"])
    assert sorted(set(kinds)) == ["APIService", "ClusterRole", "ClusterRoleBinding", "Deployment", "RoleBinding",
                                  "Service", "ServiceAccount"]


def test_deployment_runs_metrics_server_v07_with_the_kubelet_flags():
    [deployment] = by_kind("Deployment")
    assert deployment["metadata"]["namespace"] == "kube-system"
    spec = deployment["spec"]["template"]["spec"]
    [container] = spec["containers"]
    image, _, tag = container["image"].rpartition(":")
    assert image == "registry.k8s.io/metrics-server/metrics-server" and tag.startswith("v0.7.")
    assert REQUIRED_ARGS <= set(container["args"])
    assert container["ports"][0]["containerPort"] == 10250
    assert spec["serviceAccountName"] == "metrics-server"
    assert deployment["spec"]["selector"]["matchLabels"] == deployment["spec"]["template"]["metadata"]["labels"]


def test_rbac_lets_metrics_server_read_node_metrics():
    roles = {r["metadata"]["name"]: r for r in by_kind("ClusterRole")}
    rules = roles["system:metrics-server"]["rules"]
    assert any("nodes/metrics" in r["resources"] and "get" in r["verbs"] for r in rules)
    bindings = {b["metadata"]["name"]: b for b in by_kind("ClusterRoleBinding")}
    subjects = bindings["system:metrics-server"]["subjects"]
    assert {"kind": "ServiceAccount", "name": "metrics-server", "namespace": "kube-system"} in subjects
    assert bindings["metrics-server:system:auth-delegator"]["roleRef"]["name"] == "system:auth-delegator"


def test_apiservice_points_at_the_service():
    [api_service] = by_kind("APIService")
    assert api_service["metadata"]["name"] == "v1beta1.metrics.k8s.io"
    assert api_service["spec"]["group"] == "metrics.k8s.io" and api_service["spec"]["version"] == "v1beta1"
    [service] = by_kind("Service")
    assert api_service["spec"]["service"] == {"name": service["metadata"]["name"], "namespace": "kube-system"}
    assert service["spec"]["selector"] == {"k8s-app": "metrics-server"}
