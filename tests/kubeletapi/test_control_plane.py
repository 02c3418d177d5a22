"""The kubelet API against the local control plane: real TokenReview and SubjectAccessReview from RBAC,
and ``kubectl logs`` reaching a real container directory through the API server's pods/log proxy.
"""

from __future__ import annotations

import http.client
import shutil
import ssl
import time
import uuid

import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from tools.kubelite.certs import write_pair
from vkcmd.kube.client import KubeClient
from vkcmd.kube.reviews import AccessReviewer, TokenReviewer
from vkcmd.kubeletapi import tls
from vkcmd.kubeletapi.auth import Authenticator, Authorizer
from vkcmd.kubeletapi.metrics import Metrics
from vkcmd.kubeletapi.server import KubeletServer

from .conftest import LocalPKI

NODE = "vk-api-test"


@pytest.fixture(scope="module")
def kube(control_plane):
    kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    yield kube
    kube.close()


@pytest.fixture(scope="module")
def kubelet(control_plane, kube, backend, tmp_path_factory):
    """vkcmd's kubelet API as a real node would run it: cluster CA for clients, reviews by the API server."""
    pair = tls.serving_pair(None, None, state_dir=str(tmp_path_factory.mktemp("state")), node_name=NODE,
                            addresses=["127.0.0.1"])
    server = KubeletServer(node_name=NODE, backend=backend,
                           ssl_context=tls.server_context(*pair, control_plane.ca_cert_path),
                           authenticator=Authenticator(TokenReviewer(kube)),
                           authorizer=Authorizer(NODE, AccessReviewer(kube)),
                           metrics=Metrics(CollectorRegistry()), address="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


def cert_files(control_plane, tmp_path, cn, groups=()):
    crt, key = str(tmp_path / f"{cn}.crt"), str(tmp_path / f"{cn}.key")
    write_pair(control_plane.issue_client_cert(cn, groups), crt, key)
    return crt, key


def fetch(kubelet, path, cert=None, token=None):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # as the API server and metrics-server (--kubelet-insecure-tls) do
    if cert:
        context.load_cert_chain(*cert)
    connection = http.client.HTTPSConnection("127.0.0.1", kubelet.port, context=context, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_without_credentials_or_with_a_foreign_ca(kubelet, tmp_path):
    assert fetch(kubelet, "/pods")[0] == 401
    assert fetch(kubelet, "/pods", token="not-a-token")[0] == 401
    rogue = LocalPKI(tmp_path, "rogue").client("kubernetes-admin", ["system:masters"])
    try:
        status = fetch(kubelet, "/pods", cert=rogue)[0]
    except (ssl.SSLError, ConnectionError, OSError):
        status = "rejected in the TLS handshake"
    assert status in (401, "rejected in the TLS handshake")


def test_system_masters_certificate(kubelet, control_plane, tmp_path):
    boss = cert_files(control_plane, tmp_path, "boss", ["system:masters"])
    assert fetch(kubelet, "/pods", cert=boss)[0] == 200
    assert fetch(kubelet, "/stats/summary", cert=boss)[0] == 200


def test_certificates_allowed_and_denied_by_rbac(kubelet, control_plane, kube_client, tmp_path):
    rbac = k8s.RbacAuthorizationV1Api(kube_client)
    role = f"node-stats-{uuid.uuid4().hex[:6]}"
    rbac.create_cluster_role({"metadata": {"name": role},
                              "rules": [{"apiGroups": [""], "resources": ["nodes/stats", "nodes/metrics"],
                                         "verbs": ["get"]}]})
    rbac.create_cluster_role_binding({"metadata": {"name": role},
                                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                  "name": role},
                                      "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                                    "name": "alice"}]})
    alice = cert_files(control_plane, tmp_path, "alice", ["team"])
    bob = cert_files(control_plane, tmp_path, "bob")
    assert fetch(kubelet, "/stats/summary", cert=alice)[0] == 200
    assert fetch(kubelet, "/metrics/resource", cert=alice)[0] == 200
    assert fetch(kubelet, "/containerLogs/a/b/c", cert=alice) == (
        403, b"Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[proxy])")
    assert fetch(kubelet, "/pods", cert=alice)[0] == 403
    assert fetch(kubelet, "/stats/summary", cert=bob) == (
        403, b"Forbidden (user=bob, verb=get, resource=nodes, subresource(s)=[stats])")


def test_service_account_tokens(kubelet, kube_client, namespace):
    core, rbac = k8s.CoreV1Api(kube_client), k8s.RbacAuthorizationV1Api(kube_client)

    def token_for(name):
        core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        request = core.create_namespaced_service_account_token(name, namespace, {"spec": {"expirationSeconds": 600}})
        return request.status.token

    unbound = token_for("unbound")
    status, body = fetch(kubelet, "/pods", token=unbound)
    assert status == 403 and f"user=system:serviceaccount:{namespace}:unbound".encode() in body

    rbac.create_cluster_role_binding({
        "metadata": {"name": f"{namespace}-kubelet-api-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:kubelet-api-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "bound", "namespace": namespace}]})
    bound = token_for("bound")
    reviews = kubelet.authenticator.reviews
    assert fetch(kubelet, "/pods", token=bound)[0] == 200
    assert fetch(kubelet, "/containerLogs/x/y/z", token=bound)[0] == 404  # allowed; no such pod here
    assert kubelet.authenticator.reviews == reviews + 1  # the second request used the cached TokenReview


@pytest.fixture
def node_and_pod(control_plane, kube_client, kubelet, backend, namespace):
    """A Node whose kubelet endpoint is this server, and a pod on it whose container is a real process."""
    core = k8s.CoreV1Api(kube_client)
    try:
        core.create_node({"metadata": {"name": NODE}})
    except k8s.exceptions.ApiException as error:
        if error.status != 409:
            raise
    core.patch_node_status(NODE, {"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}}}})
    lines = "".join(f"entry {i}\\n" for i in range(1, 6))
    core.create_namespaced_pod(namespace, {"metadata": {"name": "logs-pod"}, "spec": {
        "nodeName": NODE, "containers": [{"name": "app", "image": "none"}, {"name": "ticker", "image": "none"}]}})
    backend.add_pod(namespace, "logs-pod", {
        "app": ["sh", "-c", f"printf '{lines}'; sleep 60"],
        "ticker": ["sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 0.3; done"]})
    time.sleep(0.2)
    return namespace


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_logs_through_the_api_server(kubectl, node_and_pod):
    namespace = node_and_pod

    def logs(*args):
        out = kubectl("logs", "-n", namespace, "logs-pod", *args, timeout=20)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert logs("-c", "app") == "".join(f"entry {i}\n" for i in range(1, 6))
    assert logs("-c", "app", "--tail=2") == "entry 4\nentry 5\n"
    stamped = logs("-c", "app", "--timestamps", "--tail=1")
    stamp, _, text = stamped.partition(" ")
    assert text == "entry 5\n" and stamp.endswith("Z")
    started = time.monotonic()
    assert logs("-c", "ticker", "-f") == "tick 1\ntick 2\ntick 3\n"  # follows until the run ends
    assert time.monotonic() - started < 10
    failed = kubectl("logs", "-n", namespace, "logs-pod", "-c", "app", "--previous", timeout=20)
    assert failed.returncode != 0 and "previous terminated container" in failed.stderr


def test_the_api_servers_kubelet_client_is_authorized_by_sar(kubelet, node_and_pod, kubectl):
    """kubelite dials with CN kube-apiserver-kubelet-client, bound to system:kubelet-api-admin: a real SAR."""
    reviews = kubelet.authorizer.reviews
    out = kubectl("logs", "-n", node_and_pod, "logs-pod", "-c", "app", "--tail=1", timeout=20)
    assert out.returncode == 0 and out.stdout == "entry 5\n", out.stderr
    assert kubelet.authorizer.reviews <= reviews + 1  # reviewed once at most, then cached
