"""A kubelet identity under Node,RBAC + NodeRestriction, through the real client and kubectl.

Two node identities (system:node:<name>, group system:nodes) with no RBAC of their
own: each reads only what pods bound to it reference, changes only its own Node,
Lease and pods, and may not set labels NodeRestriction forbids. Bootstrap tokens
authenticate as system:bootstrap:<id>.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tools.kubelite.nodeauthz import NodeAuthorizer
from tools.kubelite.nodegraph import NodeGraph


@pytest.fixture
def nodes(control_plane, kube_client, tmp_path):
    """Two registered nodes (by their own identities) and a CoreV1Api for each."""
    made, apis = [], {}
    suffix = uuid.uuid4().hex[:6]
    for n in ("a", "b"):
        name = f"node-{n}-{suffix}"
        path = control_plane.node_kubeconfig(str(tmp_path / f"{name}.kubeconfig"), name)
        c = config.new_client_from_config(config_file=path)
        made.append(c)
        core = client.CoreV1Api(c)
        core.create_node({"metadata": {"name": name, "labels": {"type": "virtual-kubelet",
                                                                 "kubernetes.io/hostname": name}}})
        apis[name] = (core, path)
    yield apis
    core = client.CoreV1Api(kube_client)
    for name in apis:
        core.delete_node(name)
    for c in made:
        c.close()


def _bound_pod(core, ns, name, node, secret, cm):
    core.create_namespaced_pod(ns, {
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{
            "name": "c", "image": "busybox", "command": ["true"],
            "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}],
            "envFrom": [{"configMapRef": {"name": cm}}]}]}})
    return core.read_namespaced_pod(name, ns)


def _status(e: ApiException) -> dict:
    return json.loads(e.body)


def test_node_reads_only_what_its_pods_reference(kube_client, namespace, nodes):
    admin = client.CoreV1Api(kube_client)
    (a, (core_a, _)), (b, (core_b, _)) = nodes.items()
    admin.create_namespaced_secret(namespace, {"metadata": {"name": "s1"}, "stringData": {"k": "v"}})
    admin.create_namespaced_config_map(namespace, {"metadata": {"name": "c1"}, "data": {"x": "1"}})
    _bound_pod(admin, namespace, "p1", a, "s1", "c1")

    assert core_a.read_namespaced_secret("s1", namespace).data["k"] == base64.b64encode(b"v").decode()
    assert core_a.read_namespaced_config_map("c1", namespace).data == {"x": "1"}
    # list/watch of the one object by a metadata.name field selector is allowed
    got = core_a.list_namespaced_secret(namespace, field_selector="metadata.name=s1").items
    assert [s.metadata.name for s in got] == ["s1"]
    # the other node: no relationship
    with pytest.raises(ApiException) as ei:
        core_b.read_namespaced_secret("s1", namespace)
    assert ei.value.status == 403
    assert _status(ei.value)["message"] == (
        f'secrets "s1" is forbidden: User "system:node:{b}" cannot get resource "secrets" in API group "" '
        f'in the namespace "{namespace}": no relationship found between node \'{b}\' and this object')
    # cluster-wide list of secrets: the real message
    with pytest.raises(ApiException) as ei:
        core_a.list_secret_for_all_namespaces()
    assert ei.value.status == 403
    assert _status(ei.value)["message"] == (
        f'secrets is forbidden: User "system:node:{a}" cannot list resource "secrets" in API group "" at the '
        f'cluster scope: can only read namespaced object of this type')
    with pytest.raises(ApiException) as ei:
        core_a.list_namespaced_config_map(namespace)
    assert ei.value.status == 403 and "No Object name found" in _status(ei.value)["message"]
    # pods: only with the spec.nodeName selector for itself
    mine = core_a.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={a}").items
    assert [p.metadata.name for p in mine] == ["p1"]
    with pytest.raises(ApiException) as ei:
        core_b.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={a}")
    assert "can only list/watch pods with spec.nodeName field selector" in _status(ei.value)["message"]
    # the pod gone: so is the relationship
    admin.delete_namespaced_pod("p1", namespace, grace_period_seconds=0)
    with pytest.raises(ApiException) as ei:
        core_a.read_namespaced_secret("s1", namespace)
    assert ei.value.status == 403


def test_node_changes_only_its_own_node_lease_and_pods(kube_client, namespace, nodes):
    admin = client.CoreV1Api(kube_client)
    (a, (core_a, _)), (b, (core_b, _)) = nodes.items()
    admin.create_namespaced_secret(namespace, {"metadata": {"name": "s2"}, "stringData": {"k": "v"}})
    admin.create_namespaced_config_map(namespace, {"metadata": {"name": "c2"}})
    _bound_pod(admin, namespace, "p2", a, "s2", "c2")

    core_a.patch_node_status(a, {"status": {"capacity": {"pods": "10"}}})
    with pytest.raises(ApiException) as ei:
        core_b.patch_node(a, {"metadata": {"labels": {"x": "y"}}})
    assert ei.value.status == 403
    assert _status(ei.value)["message"] == f'nodes "{a}" is forbidden: node "{b}" is not allowed to modify node "{a}"'
    with pytest.raises(ApiException) as ei:
        core_b.read_node(a)
    assert f"node '{b}' cannot read '{a}', only its own Node object" in _status(ei.value)["message"]
    # pod status and deletion: only its own pods
    core_a.patch_namespaced_pod_status("p2", namespace, {"status": {"phase": "Running"}})
    with pytest.raises(ApiException) as ei:
        core_b.patch_namespaced_pod_status("p2", namespace, {"status": {"phase": "Failed"}})
    assert _status(ei.value)["message"].endswith(
        f'node "{b}" can only update pod status for pods with spec.nodeName set to itself')
    with pytest.raises(ApiException) as ei:
        core_b.delete_namespaced_pod("p2", namespace)
    assert ei.value.status == 403
    # no pod creation except mirror pods
    with pytest.raises(ApiException) as ei:
        core_a.create_namespaced_pod(namespace, {"metadata": {"name": "sneaky"}, "spec": {
            "nodeName": a, "containers": [{"name": "c", "image": "x"}]}})
    assert "can only create mirror pods" in _status(ei.value)["message"]
    # leases: its own, in kube-node-lease
    coord_a = client.CoordinationV1Api(core_a.api_client)
    coord_a.create_namespaced_lease("kube-node-lease", {"metadata": {"name": a}, "spec": {"holderIdentity": a}})
    with pytest.raises(ApiException) as ei:
        coord_a.create_namespaced_lease("kube-node-lease", {"metadata": {"name": b}})
    assert "can only access node lease with the same name as the requesting node" in _status(ei.value)["message"]
    client.CoordinationV1Api(kube_client).delete_namespaced_lease(a, "kube-node-lease")
    core_a.delete_namespaced_pod("p2", namespace)


def test_noderestriction_label_rules(control_plane, kube_client, tmp_path):
    name = f"labels-{uuid.uuid4().hex[:6]}"
    path = control_plane.node_kubeconfig(str(tmp_path / "n.kubeconfig"), name)
    with config.new_client_from_config(config_file=path) as c:
        core = client.CoreV1Api(c)
        with pytest.raises(ApiException) as ei:
            core.create_node({"metadata": {"name": name, "labels": {
                "kubernetes.io/role": "agent", "node-restriction.kubernetes.io/x": "1", "jiriaf.site": "a"}}})
        assert ei.value.status == 403
        assert _status(ei.value)["message"] == (
            f'nodes "{name}" is forbidden: node "{name}" is not allowed to set the following labels: '
            f'kubernetes.io/role, node-restriction.kubernetes.io/x')
        core.create_node({"metadata": {"name": name, "labels": {
            "type": "virtual-kubelet", "jiriaf.site": "a", "node.kubernetes.io/instance-type": "hpc",
            "kubernetes.io/os": "linux"}},
            "spec": {"taints": [{"key": "virtual-kubelet.io/provider", "value": "vk", "effect": "NoSchedule"}]}})
        try:
            core.patch_node(name, {"metadata": {"labels": {"jiriaf.alivetime": "100"}}})
            with pytest.raises(ApiException) as ei:
                core.patch_node(name, {"metadata": {"labels": {"kubernetes.io/role": "agent"}}})
            assert _status(ei.value)["message"] == (
                f'nodes "{name}" is forbidden: is not allowed to modify labels: kubernetes.io/role')
            with pytest.raises(ApiException) as ei:
                core.patch_node(name, {"spec": {"taints": []}})
            assert f'node "{name}" is not allowed to modify taints' in _status(ei.value)["message"]
        finally:
            client.CoreV1Api(kube_client).delete_node(name)


def test_token_request_by_a_node_only_bound_to_its_pods(kube_client, namespace, nodes, ensure_sa):
    admin = client.CoreV1Api(kube_client)
    (a, (core_a, _)), (b, (core_b, _)) = nodes.items()
    admin.create_namespaced_secret(namespace, {"metadata": {"name": "s3"}, "stringData": {"k": "v"}})
    admin.create_namespaced_config_map(namespace, {"metadata": {"name": "c3"}})
    pod = _bound_pod(admin, namespace, "p3", a, "s3", "c3")
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "p3", "uid": pod.metadata.uid}
    with pytest.raises(ApiException) as ei:
        core_a.create_namespaced_service_account_token("default", namespace, {"spec": {"audiences": ["x"]}})
    assert "node requested token not bound to a pod" in _status(ei.value)["message"]
    with pytest.raises(ApiException) as ei:
        core_b.create_namespaced_service_account_token("default", namespace, {"spec": {"boundObjectRef": ref}})
    assert ei.value.status == 403  # b has no pod using this service account
    tr = core_a.create_namespaced_service_account_token(
        "default", namespace, {"spec": {"audiences": ["vault"], "expirationSeconds": 900, "boundObjectRef": ref}})
    claims = json.loads(base64.urlsafe_b64decode(tr.status.token.split(".")[1] + "=="))
    assert claims["aud"] == ["vault"] and claims["exp"] - claims["iat"] == 900
    assert claims["kubernetes.io"]["pod"] == {"name": "p3", "uid": pod.metadata.uid}
    assert claims["kubernetes.io"]["node"]["name"] == a
    authn = client.AuthenticationV1Api(core_a.api_client)
    review = authn.create_token_review({"spec": {"token": tr.status.token, "audiences": ["vault"]}}).status
    assert review.authenticated and review.user.extra["authentication.kubernetes.io/node-name"] == [a]
    admin.delete_namespaced_pod("p3", namespace, grace_period_seconds=0)
    review = authn.create_token_review({"spec": {"token": tr.status.token, "audiences": ["vault"]}}).status
    assert not review.authenticated


def test_kubectl_whoami_for_node_and_bootstrap_token(control_plane, kubectl, tmp_path):
    node = control_plane.node_kubeconfig(str(tmp_path / "w.kubeconfig"), "whoami-node")
    out = kubectl.with_kubeconfig(node)("auth", "whoami", "-o", "json").stdout
    info = json.loads(out)["status"]["userInfo"]
    assert info["username"] == "system:node:whoami-node" and "system:nodes" in info["groups"]
    boot = control_plane.bootstrap_kubeconfig(str(tmp_path / "b.kubeconfig"))
    info = json.loads(kubectl.with_kubeconfig(boot)("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    assert info["username"].startswith("system:bootstrap:")
    assert info["groups"][:2] == ["system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token"]


def test_expired_or_wrong_bootstrap_token_is_refused(control_plane, tmp_path):
    from tests.kubelite.test_auth import raw_get
    expired = control_plane.create_bootstrap_token(ttl=-5)
    assert raw_get(control_plane, "/api/v1/nodes", token=expired)[0] == 401
    good = control_plane.create_bootstrap_token()
    assert raw_get(control_plane, "/apis/certificates.k8s.io", token=good)[0] != 401
    wrong = good[:7] + ("a" if good[7] != "a" else "b") + good[8:]
    assert raw_get(control_plane, "/api", token=wrong)[0] == 401


def test_graph_follows_binding_and_spec_changes():
    graph = NodeGraph()
    authz = NodeAuthorizer(graph)
    pod = {"metadata": {"namespace": "ns", "name": "p"}, "spec": {"volumes": [
        {"name": "v", "projected": {"sources": [{"secret": {"name": "ps"}}, {"configMap": {"name": "pc"}}]}}]}}
    graph.on_pod("ADDED", pod, None)
    get = lambda kind, name: {"resourceAttributes": {"verb": "get", "resource": kind, "namespace": "ns",  # noqa
                                                     "name": name, "group": ""}}
    assert authz.authorize("system:node:n", ["system:nodes"], get("secrets", "ps"))[0] is None
    bound = json.loads(json.dumps(pod))
    bound["spec"]["nodeName"] = "n"
    graph.on_pod("MODIFIED", bound, pod)
    assert authz.authorize("system:node:n", ["system:nodes"], get("secrets", "ps"))[0] is True
    assert authz.authorize("system:node:n", ["system:nodes"], get("configmaps", "pc"))[0] is True
    assert authz.authorize("system:node:m", ["system:nodes"], get("secrets", "ps"))[0] is None
    assert authz.authorize("system:node:n", ["other"], get("secrets", "ps")) == (None, "")
    graph.on_pod("DELETED", bound, None)
    assert authz.authorize("system:node:n", ["system:nodes"], get("secrets", "ps"))[0] is None
