"""Authentication and authorization: client certs, anonymous callers, RBAC, access reviews."""

from __future__ import annotations

import http.client
import json
import ssl

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tools.kubelite.certs import ClusterPKI


def raw_get(cp, path, cert=None, token=None):
    ctx = ssl.create_default_context(cafile=cp.ca_cert_path)
    if cert is not None:
        ctx.load_cert_chain(*cert)
    conn = http.client.HTTPSConnection("127.0.0.1", cp.port, context=ctx, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def write_pair(tmp_path, pair, stem):
    crt, key = tmp_path / f"{stem}.crt", tmp_path / f"{stem}.key"
    crt.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    return str(crt), str(key)


@pytest.fixture
def user_client(control_plane, tmp_path):
    """Factory: a kubernetes ApiClient authenticated by a fresh cert for (cn, groups)."""
    made = []

    def make(cn, groups=()):
        path = control_plane.write_kubeconfig(str(tmp_path / f"{cn.replace(':', '_')}.kubeconfig"), cn, groups)
        c = config.new_client_from_config(config_file=path)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def test_anonymous_is_401_except_health_and_version(control_plane):
    status, body = raw_get(control_plane, "/api/v1/namespaces/default/pods")
    assert status == 401
    assert json.loads(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    for path in ("/healthz", "/livez", "/readyz", "/version"):
        assert raw_get(control_plane, path)[0] == 200, path
    assert raw_get(control_plane, "/api")[0] == 401


def test_invalid_bearer_token_is_401(control_plane):
    assert raw_get(control_plane, "/api/v1/pods", token="not-a-jwt")[0] == 401


def test_cert_from_another_ca_is_rejected(control_plane, tmp_path):
    rogue = ClusterPKI("rogue").issue_client_cert("kubernetes-admin", ["system:masters"])
    cert = write_pair(tmp_path, rogue, "rogue")
    try:
        status, _ = raw_get(control_plane, "/api/v1/pods", cert=cert)
    except (ssl.SSLError, ConnectionError, OSError):
        return  # rejected in the TLS handshake
    assert status == 401


def test_admin_cert_is_allowed(control_plane, tmp_path):
    pair = control_plane.issue_client_cert("someone", ["system:masters"])
    status, body = raw_get(control_plane, "/api/v1/namespaces", cert=write_pair(tmp_path, pair, "admin2"))
    assert status == 200 and json.loads(body)["kind"] == "NamespaceList"


def test_rbac_denies_then_allows(user_client, kube_client, namespace):
    alice = client.CoreV1Api(user_client("alice"))
    with pytest.raises(ApiException) as ei:
        alice.list_namespaced_config_map(namespace)
    assert ei.value.status == 403
    body = json.loads(ei.value.body)
    assert body["reason"] == "Forbidden"
    assert 'User "alice" cannot list resource "configmaps"' in body["message"]
    rbac = client.RbacAuthorizationV1Api(kube_client)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "alice-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
        "subjects": [{"kind": "User", "name": "alice"}]})
    assert alice.list_namespaced_config_map(namespace).items is not None
    with pytest.raises(ApiException) as ei:
        alice.create_namespaced_config_map(namespace, {"metadata": {"name": "nope"}})
    assert ei.value.status == 403


def test_subject_access_review_from_rbac(kube_client, namespace):
    authz = client.AuthorizationV1Api(kube_client)
    rbac = client.RbacAuthorizationV1Api(kube_client)

    def review(user, verb, resource="pods", groups=None, subresource=None):
        attrs = {"verb": verb, "resource": resource, "namespace": namespace}
        if subresource:
            attrs["subresource"] = subresource
        spec = {"user": user, "resourceAttributes": attrs}
        if groups:
            spec["groups"] = groups
        return authz.create_subject_access_review({"spec": spec}).status

    assert review("bob", "get").allowed is False
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "bob-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "User", "name": "bob"}]})
    assert review("bob", "get").allowed is True
    assert review("bob", "delete").allowed is False
    assert review("anyone", "delete", groups=["system:masters"]).allowed is True
    # the apiserver's kubelet-client identity may use the kubelet API (nodes/proxy etc.)
    assert review("kube-apiserver-kubelet-client", "get", resource="nodes", subresource="proxy").allowed is True


def test_self_subject_access_review(user_client, kube_client):
    carol = client.AuthorizationV1Api(user_client("carol"))
    status = carol.create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": "delete", "resource": "nodes"}}}).status
    assert status.allowed is False
    admin = client.AuthorizationV1Api(kube_client)
    status = admin.create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": "delete", "resource": "nodes"}}}).status
    assert status.allowed is True


def test_groups_come_from_cert_organizations(user_client, kube_client):
    rbac = client.RbacAuthorizationV1Api(kube_client)
    rbac.create_cluster_role({"metadata": {"name": "test-pod-lister"},
                              "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
    rbac.create_cluster_role_binding({
        "metadata": {"name": "test-pod-listers"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "test-pod-lister"},
        "subjects": [{"kind": "Group", "name": "test-listers"}]})
    try:
        member = client.CoreV1Api(user_client("system:node:n1", ["test-listers"]))
        assert member.list_pod_for_all_namespaces().items is not None
        outsider = client.CoreV1Api(user_client("system:node:n2", ["other"]))
        with pytest.raises(ApiException) as ei:
            outsider.list_pod_for_all_namespaces()
        assert ei.value.status == 403
    finally:
        rbac.delete_cluster_role_binding("test-pod-listers")
        rbac.delete_cluster_role("test-pod-lister")
