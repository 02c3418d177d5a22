"""A bootstrap-joined node renews its client certificate before it expires and stays Ready, without a restart.

The control plane here signs kubelet client certificates for 100 s (its --cluster-signing-duration; backdated
5 minutes as kube-controller-manager does), so the node's renewal at 80 % of the certificate's life comes
about 20 s after each issue. A second identity's refusals are checked on the same node (Node authorizer).
"""

from __future__ import annotations

import pytest
from cryptography import x509

from tests.e2e.node import Node, example, wait_for
from vkcmd.kube.bootstrap import credentials_path
from vkcmd.kube.client import ApiError, KubeClient, path

SIGNING_SECONDS = 100


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    from tools.kubelite import ControlPlane

    with ControlPlane(str(tmp_path_factory.mktemp("kubelite-short-certs")), csr_max_seconds=SIGNING_SECONDS) as cp:
        yield cp


@pytest.fixture(scope="module")
def node(control_plane, tmp_path_factory):
    running = Node(control_plane, tmp_path_factory.mktemp("vk"), name="vk-rotating", identity="bootstrap").start()
    yield running
    assert running.stop() == 0, running.log()


def serial(node) -> int:
    pem = credentials_path(node.kubeconfig).read_bytes()
    return x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----"):]).serial_number


def test_the_client_certificate_is_renewed_and_the_node_stays_ready(node, control_plane, namespace):
    pid, first = node.process.pid, serial(node)
    wait_for(lambda: serial(node) != first, timeout=SIGNING_SECONDS / 2, interval=0.5,
             what="the node's client certificate renewed")
    admin = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    try:
        csrs = admin.get("/apis/certificates.k8s.io/v1/certificatesigningrequests")["items"]
        renewal = [c for c in csrs if c["spec"]["username"] == f"system:node:{node.name}"]
        assert renewal and all(c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
                               for c in renewal)  # renewed with its own identity (selfnodeclient)
    finally:
        admin.close()
    assert "certificate renewed" in node.log()
    # still the same process, Ready, and the renewed identity works: its lease keeps moving, a pod runs
    lease = lambda: node.client.get(path(group="coordination.k8s.io", version="v1", resource="leases",  # noqa: E731
                                         namespace="kube-node-lease", name=node.name))["spec"]["renewTime"]
    before = lease()
    wait_for(lambda: lease() != before, timeout=30, interval=0.5, what="a lease renewal after the rotation")
    assert node.process.pid == pid and node.ready()
    for doc in example("secret-pod.yaml"):
        node.create(doc, namespace)
    assert node.wait_phase("hello", namespace=namespace, timeout=40)["status"]["phase"] == "Succeeded"


def test_a_second_nodes_identity_may_not_read_the_first_nodes_secrets_nor_patch_its_node(node, control_plane,
                                                                                        namespace, tmp_path):
    for doc in example("secret-pod.yaml"):
        node.create(doc, namespace)
    node.wait_phase("hello", namespace=namespace, timeout=40)
    secret = path(resource="secrets", namespace=namespace, name="hello-script")
    own = KubeClient.from_kubeconfig(node.kubeconfig)
    other = KubeClient.from_kubeconfig(control_plane.node_kubeconfig(str(tmp_path / "other.kubeconfig"), "vk-other"))
    try:
        assert own.get(secret)["metadata"]["name"] == "hello-script"  # its pod references it
        for attempt in (lambda: other.get(secret),
                        lambda: other.patch(path(resource="nodes", name=node.name),
                                            {"metadata": {"labels": {"x": "y"}}})):
            with pytest.raises(ApiError) as refused:
                attempt()
            assert refused.value.status == 403, refused.value
    finally:
        own.close()
        other.close()
