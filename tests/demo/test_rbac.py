"""``deploy/rbac.yaml``: accepted by the control plane, and enough (not more) for a vkcmd node.

The kubeconfig is made exactly as the README says (a token of the ``vkcmd`` service account);
``kubectl auth can-i`` checks the rules, then a real node runs a pod with nothing but that identity.
"""

from __future__ import annotations

import base64
import subprocess

import pytest
import yaml

from tests.e2e.node import EXAMPLES, REPO, Node, container_state

RBAC = REPO / "deploy" / "rbac.yaml"

# (verb, resource, namespace or None for all/cluster) a node must be allowed
ALLOWED = [
    ("create", "nodes", None), ("get", "nodes", None), ("watch", "nodes", None), ("update", "nodes", None),
    ("patch", "nodes", None), ("delete", "nodes", None), ("patch", "nodes/status", None),
    ("create", "leases.coordination.k8s.io", "kube-node-lease"),
    ("update", "leases.coordination.k8s.io", "kube-node-lease"),
    ("get", "leases.coordination.k8s.io", "kube-node-lease"),
    ("list", "pods", "--all"), ("watch", "pods", "--all"), ("get", "pods", "default"),
    ("delete", "pods", "default"), ("patch", "pods/status", "default"),
    ("create", "events", "default"), ("patch", "events", "default"),
    ("get", "configmaps", "default"), ("get", "secrets", "default"),
    ("create", "serviceaccounts/token", "default"),
    ("create", "tokenreviews.authentication.k8s.io", None),
    ("create", "subjectaccessreviews.authorization.k8s.io", None),
]
DENIED = [
    ("create", "pods", "default"), ("create", "secrets", "default"), ("delete", "secrets", "default"),
    ("update", "configmaps", "default"), ("create", "leases.coordination.k8s.io", "default"),
    ("create", "deployments.apps", "default"), ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    ("get", "nodes/proxy", None),
    ("list", "configmaps", "--all"), ("watch", "configmaps", "--all"), ("list", "secrets", "--all"),
    ("watch", "secrets", "--all"), ("list", "secrets", "default"),
]


@pytest.fixture(scope="module")
def node_kubeconfig(kubectl, tmp_path_factory):
    """Apply the RBAC yaml as admin, then build the node's kubeconfig with the README's recipe."""
    applied = kubectl("apply", "-f", str(RBAC), check=True).stdout
    for line in ("namespace/vkcmd-system", "serviceaccount/vkcmd", "clusterrole.rbac.authorization.k8s.io/vkcmd-node",
                 "clusterrolebinding.rbac.authorization.k8s.io/vkcmd-node",
                 "role.rbac.authorization.k8s.io/vkcmd-node-lease",
                 "rolebinding.rbac.authorization.k8s.io/vkcmd-node-lease"):
        assert line in applied, applied
    directory = tmp_path_factory.mktemp("rbac")
    path, ca = directory / "vkcmd.kubeconfig", directory / "ca.crt"
    token = kubectl("-n", "vkcmd-system", "create", "token", "vkcmd", "--duration=24h", check=True).stdout.strip()
    server = kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}", check=True).stdout
    ca_data = kubectl("config", "view", "--minify", "--raw", "-o",
                      "jsonpath={.clusters[0].cluster.certificate-authority-data}", check=True).stdout
    ca.write_bytes(base64.b64decode(ca_data))
    node = kubectl.with_kubeconfig(str(path))
    node("config", "set-cluster", "cluster", f"--server={server}", f"--certificate-authority={ca}", "--embed-certs",
         check=True)
    node("config", "set-credentials", "vkcmd", f"--token={token}", check=True)
    node("config", "set-context", "vkcmd", "--cluster=cluster", "--user=vkcmd", check=True)
    node("config", "use-context", "vkcmd", check=True)
    return str(path)


def can_i(kubectl, verb: str, resource: str, namespace: str | None) -> str:
    resource, _, subresource = resource.partition("/")  # kubectl reads TYPE/NAME, so the subresource is a flag
    args = ["auth", "can-i", verb, resource] + ([f"--subresource={subresource}"] if subresource else [])
    if namespace == "--all":
        args.append("--all-namespaces")
    elif namespace:
        args += ["-n", namespace]
    proc = kubectl(*args)
    return proc.stdout.strip() or proc.stderr.strip()


def test_the_node_kubeconfig_carries_only_the_node_credentials(node_kubeconfig, control_plane):
    config = yaml.safe_load(open(node_kubeconfig))
    assert [u["name"] for u in config["users"]] == ["vkcmd"] and set(config["users"][0]["user"]) == {"token"}
    admin = yaml.safe_load(open(control_plane.kubeconfig))["users"][0]["user"]
    text = open(node_kubeconfig).read()
    assert not any(str(value) in text for value in admin.values())


def test_rbac_yaml_is_accepted_and_applies_again_unchanged(kubectl, node_kubeconfig):
    again = kubectl("apply", "-f", str(RBAC), check=True).stdout
    assert again.count("unchanged") == 6, again
    assert kubectl.with_kubeconfig(node_kubeconfig)("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"
                                                    ).stdout in ("system:serviceaccount:vkcmd-system:vkcmd", "")


@pytest.mark.parametrize("verb,resource,namespace", ALLOWED)
def test_the_node_identity_may(kubectl, node_kubeconfig, verb, resource, namespace):
    assert can_i(kubectl.with_kubeconfig(node_kubeconfig), verb, resource, namespace) == "yes"


@pytest.mark.parametrize("verb,resource,namespace", DENIED)
def test_the_node_identity_may_not(kubectl, node_kubeconfig, verb, resource, namespace):
    assert can_i(kubectl.with_kubeconfig(node_kubeconfig), verb, resource, namespace) == "no"


def test_a_node_runs_a_pod_with_only_this_identity(control_plane, kubectl, node_kubeconfig, tmp_path):
    node = Node(control_plane, tmp_path, name="vk-rbac", KUBECONFIG=node_kubeconfig).start()
    try:
        kubectl("create", "namespace", "rbac-demo", check=True)
        kubectl("apply", "-n", "rbac-demo", "-f", str(EXAMPLES / "secret-pod.yaml"), check=True)
        pod = node.wait_phase("hello", namespace="rbac-demo", timeout=30)
        assert pod["status"]["phase"] == "Succeeded", pod["status"]
        assert container_state(pod, "main")["state"]["terminated"]["exitCode"] == 0
        # kubectl logs reaches the node's kubelet API, which checks the caller with TokenReview/SAR as vkcmd
        logs = kubectl("logs", "-n", "rbac-demo", "hello", check=True).stdout
        assert logs.startswith("hello from hello on vk-rbac, greeting=bonjour")
        kubectl("delete", "pod", "-n", "rbac-demo", "hello", "--wait=false", check=True)
        node.wait_gone("hello", namespace="rbac-demo", timeout=30)
        assert "403" not in node.log() and "Forbidden" not in node.log(), node.log()
    finally:
        code = node.stop()
        node.client.close()
    assert code == 0, node.log()
    assert "Draining -> Expired" in node.log()


def test_without_the_binding_a_node_is_refused(control_plane, kubectl, node_kubeconfig):
    """The rules are what makes it work: another service account's token cannot register a node."""
    kubectl("-n", "vkcmd-system", "create", "serviceaccount", "nobody", check=True)
    try:
        token = kubectl("-n", "vkcmd-system", "create", "token", "nobody", check=True).stdout.strip()
        proc = subprocess.run([kubectl.binary, "--kubeconfig", node_kubeconfig, "--token", token, "--cache-dir",
                               kubectl.cache_dir, "auth", "can-i", "create", "nodes"], capture_output=True, text=True)
        assert proc.stdout.strip() == "no"
    finally:
        kubectl("-n", "vkcmd-system", "delete", "serviceaccount", "nobody", check=True)
