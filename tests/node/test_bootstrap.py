"""Joining from a bootstrap token: when to bootstrap, the node's key/CSR, the files written, reload, renewal.

The pieces run against kubelite with certificates its CA signs; the whole join
(bootstrap token → CSR → approval → node identity) runs once the control plane
serves certificates.k8s.io (skipped, saying so, until it does).
"""

from __future__ import annotations

import datetime
import os
import stat
import subprocess
import sys

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.node import REPO, Node
from vkcmd.kube.bootstrap import (CertificateRotation, credentials_path, key_and_csr, needs_bootstrap,
                                  write_node_kubeconfig)
from vkcmd.kube.client import ApiError, KubeClient


def whoami(client: KubeClient) -> str:
    """Who the API server takes the client for (the user a refusal names; kubelite has no SelfSubjectReview)."""
    try:
        client.get("/apis/rbac.authorization.k8s.io/v1/clusterroles")
    except ApiError as error:
        assert error.status == 403, error
        return error.message.split('"')[1]
    return "(allowed: not a node)"


def cluster_of(control_plane) -> dict:
    return yaml.safe_load(open(control_plane.kubeconfig))["clusters"][0]["cluster"]


def expired_pem() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:node:old")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=2))
            .not_valid_after(now - datetime.timedelta(hours=1)).sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()), cert.public_bytes(serialization.Encoding.PEM))


def test_when_to_bootstrap(control_plane, tmp_path):
    missing = tmp_path / "none.kubeconfig"
    assert needs_bootstrap(str(missing)) == f"{missing} does not exist"
    good = control_plane.write_kubeconfig(str(tmp_path / "good.kubeconfig"), "system:node:a", ["system:nodes"])
    assert needs_bootstrap(good) is None
    assert needs_bootstrap(control_plane.kubeconfig) is None  # whatever credentials, while valid
    old = tmp_path / "old.kubeconfig"
    write_node_kubeconfig(str(old), cluster_of(control_plane), *expired_pem())
    assert "expired at" in needs_bootstrap(str(old))


def test_the_key_and_csr_name_the_node():
    key_pem, csr_pem = key_and_csr("system:node:nid", ["system:nodes"], dns=["nid.local"], ips=["10.0.0.7"])
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:nid"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["nid.local"]
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert serialization.load_pem_private_key(key_pem, None).public_key().public_numbers() == \
        csr.public_key().public_numbers()


def test_the_written_kubeconfig_is_private_and_is_the_node(control_plane, tmp_path, kubectl):
    pair = control_plane.issue_client_cert("system:node:vk-boot", ["system:nodes"])
    kubeconfig = tmp_path / "node" / "node.kubeconfig"
    write_node_kubeconfig(str(kubeconfig), cluster_of(control_plane), pair.key_pem, pair.cert_pem)
    pem = credentials_path(str(kubeconfig))
    for written in (kubeconfig, pem):
        assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
    assert not [p for p in kubeconfig.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    config = yaml.safe_load(kubeconfig.read_text())
    assert config["users"] == [{"name": "default-auth", "user": {"client-certificate": str(pem),
                                                                  "client-key": str(pem)}}]
    refusal = kubectl.with_kubeconfig(str(kubeconfig))("get", "clusterroles").stderr
    assert 'User "system:node:vk-boot" cannot list' in refusal, refusal


def test_a_reloaded_client_uses_the_renewed_certificate(control_plane, tmp_path):
    first = control_plane.issue_client_cert("system:node:vk-a", ["system:nodes"])
    kubeconfig = str(tmp_path / "node.kubeconfig")
    write_node_kubeconfig(kubeconfig, cluster_of(control_plane), first.key_pem, first.cert_pem)
    client = KubeClient.from_kubeconfig(kubeconfig)
    try:
        assert whoami(client) == "system:node:vk-a"
        rotation = CertificateRotation(client, kubeconfig, "vk-a", on_renewed=lambda: None)
        assert rotation.ours()
        cert = x509.load_pem_x509_certificate(first.cert_pem)
        begin, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
        assert rotation.due() == pytest.approx(begin + 0.8 * (end - begin))
        second = control_plane.issue_client_cert("system:node:vk-b", ["system:nodes"])
        credentials_path(kubeconfig).write_bytes(second.key_pem + second.cert_pem)
        client.reload(kubeconfig)
        assert whoami(client) == "system:node:vk-b"
    finally:
        client.close()
    assert not CertificateRotation(client, control_plane.kubeconfig, "x", on_renewed=lambda: None).ours()


def serves_csrs(client: KubeClient) -> bool:
    try:
        client.get("/apis/certificates.k8s.io/v1/certificatesigningrequests")
        return True
    except ApiError:
        return False


def test_a_node_joins_with_only_a_bootstrap_token(control_plane, tmp_path, kubectl):
    admin = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    if not serves_csrs(admin):
        admin.close()
        pytest.skip("the control plane does not serve certificates.k8s.io yet (kubelite side of issue 12)")
    kubectl("apply", "-f", str(REPO / "deploy" / "node-bootstrap.yaml"), check=True)
    token_id, secret = "vkboot", "0123456789abcdef"
    admin.create("/api/v1/namespaces/kube-system/secrets", {
        "metadata": {"name": f"bootstrap-token-{token_id}"}, "type": "bootstrap.kubernetes.io/token",
        "stringData": {"token-id": token_id, "token-secret": secret, "usage-bootstrap-authentication": "true",
                       "auth-extra-groups": "system:bootstrappers:vkcmd"}})
    cluster = cluster_of(control_plane)
    bootstrap_config = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "c", "cluster": cluster}],
                        "users": [{"name": "b", "user": {"token": f"{token_id}.{secret}"}}],
                        "contexts": [{"name": "b", "context": {"cluster": "c", "user": "b"}}], "current-context": "b"}
    bootstrap_path = tmp_path / "bootstrap.kubeconfig"
    bootstrap_path.write_text(yaml.safe_dump(bootstrap_config))
    kubeconfig = tmp_path / "vkcmd" / "node.kubeconfig"
    node = Node(control_plane, tmp_path, name="vk-joined", KUBECONFIG=str(kubeconfig),
                VK_BOOTSTRAP_KUBECONFIG=str(bootstrap_path))
    try:
        node.start()
        node_client = KubeClient.from_kubeconfig(str(kubeconfig))
        assert whoami(node_client) == "system:node:vk-joined"
        node_client.close()
        assert stat.S_IMODE(os.stat(kubeconfig).st_mode) == 0o600
        assert secret not in node.log()
    finally:
        assert node.stop() == 0, node.log()[-3000:]
        admin.close()


def test_a_refused_bootstrap_token_stops_start_up_with_a_reason_and_no_secret(control_plane, tmp_path):
    config = {"apiVersion": "v1", "kind": "Config",
              "clusters": [{"name": "c", "cluster": cluster_of(control_plane)}],
              "users": [{"name": "b", "user": {"token": "abcdef.0123456789abcdef"}}],
              "contexts": [{"name": "b", "context": {"cluster": "c", "user": "b"}}], "current-context": "b"}
    (tmp_path / "bootstrap.kubeconfig").write_text(yaml.safe_dump(config))
    env = {**os.environ, "HOME": str(tmp_path), "NODENAME": "vk-refused", "VKUBELET_POD_IP": "127.0.0.1",
           "KUBECONFIG": str(tmp_path / "node.kubeconfig"),
           "VK_BOOTSTRAP_KUBECONFIG": str(tmp_path / "bootstrap.kubeconfig")}
    proc = subprocess.run([sys.executable, "-m", "vkcmd"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "could not join with the bootstrap kubeconfig" in proc.stderr
    assert "0123456789abcdef" not in proc.stderr + proc.stdout
    assert not (tmp_path / "node.kubeconfig").exists()


def test_the_serving_reload_hook_serves_the_renewed_pair_to_new_connections(control_plane, tmp_path):
    """What the app hands the serving rotation: the server's SSLContext takes the renewed pair in place."""
    import socket
    import ssl
    import threading

    from vkcmd.kube.bootstrap import serving_paths, serving_rotation
    from vkcmd.kubeletapi.tls import server_context

    def pair(directory):
        cert_file, key_file = serving_paths(str(directory))
        directory.mkdir()
        made = control_plane.issue_serving_cert()
        cert_file.write_bytes(made.cert_pem)
        key_file.write_bytes(made.key_pem)
        return str(cert_file), str(key_file)

    first, second = pair(tmp_path / "a"), pair(tmp_path / "b")
    context = server_context(*first, None)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def served():
        client = ssl.create_default_context(cafile=control_plane.ca_cert_path)
        client.check_hostname = False
        with socket.create_connection(listener.getsockname()) as raw, client.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)

    try:
        assert served() == x509.load_pem_x509_certificate(open(first[0], "rb").read()).public_bytes(
            serialization.Encoding.DER)
        rotation = serving_rotation(None, "n", ["127.0.0.1"], ["h"], str(tmp_path / "b"),
                                    on_renewed=lambda c, k: context.load_cert_chain(c, k))
        cert = x509.load_pem_x509_certificate(open(second[0], "rb").read())
        begin, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
        assert rotation.due() == pytest.approx(begin + 0.8 * (end - begin))
        context.load_cert_chain(*second)  # what on_renewed does
        assert served() == cert.public_bytes(serialization.Encoding.DER)
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept(); a close() alone does not
        listener.close()
        thread.join(5)
