"""metrics-server/components.yaml, by what it does: its RBAC, applied to the local control plane, lets
metrics-server's service account read the kubelet's resource metrics (and neither logs nor anything that executes)."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client as k8s
from kubernetes import utils

MANIFEST = Path(__file__).resolve().parents[2] / "metrics-server" / "components.yaml"
RBAC = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
SERVICE_ACCOUNT = "system:serviceaccount:kube-system:metrics-server"


def _allowed(kube_client, verb, subresource, groups=("system:serviceaccounts",
                                                      "system:serviceaccounts:kube-system")) -> bool:
    review = k8s.AuthorizationV1Api(kube_client).create_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": SERVICE_ACCOUNT, "groups": list(groups),
                 "resourceAttributes": {"verb": verb, "resource": "nodes", "subresource": subresource,
                                        "name": "vk-test"}}})
    return bool(review.status.allowed)


def test_the_rbac_lets_metrics_server_scrape_and_nothing_more(kube_client):
    documents = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d and d["kind"] in RBAC]
    assert {d["kind"] for d in documents} == set(RBAC)
    for document in documents:
        try:
            utils.create_from_dict(kube_client, document)
        except utils.FailToCreateError as error:
            assert all(getattr(e, "status", 0) == 409 for e in error.api_exceptions), error
    assert _allowed(kube_client, "get", "metrics")
    assert not _allowed(kube_client, "create", "proxy")  # no exec, attach or port-forward
    assert not _allowed(kube_client, "get", "log")
