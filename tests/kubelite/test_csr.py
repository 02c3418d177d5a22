"""TLS bootstrapping against kubelite: bootstrap token -> CSR -> auto-approved -> signed -> a working node cert.

Through the real client and kubectl, with kubeadm's standard bindings (created by
the control plane as ``kubeadm init`` does) and kube-controller-manager's
approver and signer.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.kubelite.test_auth import raw_get

CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"


def make_csr(cn, orgs=("system:nodes",), ips=()):
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    names.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if ips:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]), critical=False)
    pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return base64.b64encode(pem).decode(), key_pem


def wait_for(fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def test_bootstrap_token_to_an_issued_node_certificate(control_plane, kubectl, tmp_path):
    node = f"boot-{uuid.uuid4().hex[:6]}"
    boot = control_plane.bootstrap_kubeconfig(str(tmp_path / "bootstrap.kubeconfig"))
    request, key_pem = make_csr(f"system:node:{node}")
    with config.new_client_from_config(config_file=boot) as c:
        certs = client.CertificatesV1Api(c)
        created = certs.create_certificate_signing_request({
            "metadata": {"generateName": "node-csr-"},
            "spec": {"request": request, "signerName": CLIENT_SIGNER, "expirationSeconds": 900,
                     "usages": ["digital signature", "client auth"]}})
        name = created.metadata.name
        assert created.spec.username.startswith("system:bootstrap:")
        assert "system:bootstrappers" in created.spec.groups
        done = wait_for(lambda: (certs.read_certificate_signing_request(name).status.certificate and
                                 certs.read_certificate_signing_request(name)))
    approved = [c for c in done.status.conditions if c.type == "Approved"][0]
    assert approved.reason == "AutoApproved" and approved.status == "True"
    cert = x509.load_pem_x509_certificate(base64.b64decode(done.status.certificate))
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(seconds=800) < lifetime <= datetime.timedelta(seconds=900)
    crt, key = tmp_path / "node.crt", tmp_path / "node.key"
    crt.write_bytes(base64.b64decode(done.status.certificate))
    key.write_bytes(key_pem)
    status, body = raw_get(control_plane, "/apis/authentication.k8s.io/v1", cert=(str(crt), str(key)))
    assert status == 200
    # renewal by the node itself: the selfnodeclient path
    kc = control_plane.node_kubeconfig(str(tmp_path / "node.kubeconfig"), node)
    request2, _ = make_csr(f"system:node:{node}")
    with config.new_client_from_config(config_file=kc) as c:
        certs = client.CertificatesV1Api(c)
        name2 = certs.create_certificate_signing_request({
            "metadata": {"name": f"renew-{node}"},
            "spec": {"request": request2, "signerName": CLIENT_SIGNER, "usages": ["client auth"]}}).metadata.name
        renewed = wait_for(lambda: certs.read_certificate_signing_request(name2).status.certificate and
                           certs.read_certificate_signing_request(name2))
    assert "self kubelet client" in [c for c in renewed.status.conditions if c.type == "Approved"][0].message


def test_csr_for_another_identity_is_not_auto_approved_and_serving_waits_for_admin(control_plane, kube_client,
                                                                                     kubectl):
    certs = client.CertificatesV1Api(kube_client)
    node = f"serve-{uuid.uuid4().hex[:6]}"
    request, _ = make_csr(f"system:node:{node}", ips=("127.0.0.1",))
    certs.create_certificate_signing_request({
        "metadata": {"name": f"{node}-serving"},
        "spec": {"request": request, "signerName": "kubernetes.io/kubelet-serving",
                 "usages": ["digital signature", "server auth"]}})
    time.sleep(1.0)
    csr = certs.read_certificate_signing_request(f"{node}-serving")
    assert not csr.status.conditions and not csr.status.certificate
    kubectl("certificate", "approve", f"{node}-serving", check=True)
    done = wait_for(lambda: certs.read_certificate_signing_request(f"{node}-serving").status.certificate)
    cert = x509.load_pem_x509_certificate(base64.b64decode(done))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    out = kubectl("get", "csr", f"{node}-serving", "-o", "json", check=True).stdout
    assert json.loads(out)["status"]["conditions"][0]["type"] == "Approved"


def test_csr_validation(kube_client):
    certs = client.CertificatesV1Api(kube_client)
    request, _ = make_csr("system:node:x")
    with pytest.raises(ApiException) as ei:
        certs.create_certificate_signing_request({"metadata": {"name": "short"}, "spec": {
            "request": request, "signerName": CLIENT_SIGNER, "usages": ["client auth"], "expirationSeconds": 599}})
    assert ei.value.status == 422
    assert "may not specify a duration less than 600 seconds" in json.loads(ei.value.body)["message"]
    with pytest.raises(ApiException) as ei:
        certs.create_certificate_signing_request({"metadata": {"name": "bad"}, "spec": {
            "request": base64.b64encode(b"nope").decode(), "signerName": CLIENT_SIGNER, "usages": ["client auth"]}})
    assert ei.value.status == 422 and "CERTIFICATE REQUEST" in json.loads(ei.value.body)["message"]
