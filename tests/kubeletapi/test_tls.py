"""The serving pair: given files checked, self-signed generated once and reused, bad pairs refused clearly."""

from __future__ import annotations

import datetime
import http.client
import socket
import ssl
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry

from tools.kubelite.certs import ClusterPKI, write_pair
from vkcmd.kubeletapi.tls import TLSFileError as ConfigError
from vkcmd.kubeletapi import tls
from vkcmd.kubeletapi.auth import Authenticator, Authorizer
from vkcmd.kubeletapi.server import KubeletServer


def _served_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as sock:
        return sock.getpeercert(binary_form=True)


def test_a_node_that_keeps_its_pair_never_loads_cryptography(tmp_path):
    """Checking a kept pair (and the client CA, and serving with it) is ssl's and certfacts' work: the
    ~11 MiB of ``cryptography`` are loaded only to make a pair. Also an encrypted key is refused, never
    a passphrase asked for on the terminal."""
    state = str(tmp_path / "state")
    cert, key = tls.self_signed_pair(state, "vk-node")  # (this process loads cryptography to make it)
    code = ("import sys, vkcmd.app; from vkcmd.kubeletapi import tls; from vkcmd.kube import bootstrap; "
            f"pair = tls.self_signed_pair({state!r}, 'vk-node'); assert pair == ({cert!r}, {key!r}); "
            f"tls.server_context(*pair, {cert!r}); "
            "print(sorted(m for m in sys.modules if m.startswith('cryptography')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(tmp_path):
    from cryptography.hazmat.primitives import serialization

    cert, key = tls.self_signed_pair(str(tmp_path / "state"), "vk-node")
    loaded = serialization.load_pem_private_key(open(key, "rb").read(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(ConfigError, match="expected an unencrypted PEM private key"):
        tls.check_pair(cert, str(encrypted))


def test_self_signed_pair_is_generated_once_and_reused(tmp_path):
    cert, key = tls.self_signed_pair(str(tmp_path / "state"), "vk-node", ["10.1.2.3", "vk-node.example"])
    assert stat.S_IMODE((tmp_path / "state" / "kubelet-serving.key").stat().st_mode) == 0o600
    parsed = x509.load_pem_x509_certificate(open(cert, "rb").read())
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"vk-node", "localhost", "vk-node.example"} <= set(names.get_values_for_type(x509.DNSName))
    assert {"127.0.0.1", "10.1.2.3"} <= {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    again = tls.self_signed_pair(str(tmp_path / "state"), "vk-node", ["10.1.2.3"])
    assert again == (cert, key)
    assert x509.load_pem_x509_certificate(open(cert, "rb").read()).serial_number == parsed.serial_number


def test_a_long_node_name_fits(tmp_path):
    name = "n" * 60 + "." + "x" * 60 + ".example.org"
    cert, _ = tls.self_signed_pair(str(tmp_path), name)
    parsed = x509.load_pem_x509_certificate(open(cert, "rb").read())
    assert name in parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName)


def test_self_signed_pair_is_renewed_when_about_to_expire(tmp_path):
    cert, _ = tls.self_signed_pair(str(tmp_path), "vk-node")
    first = open(cert, "rb").read()
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=360)
    tls.self_signed_pair(str(tmp_path), "vk-node", now=later)
    assert open(cert, "rb").read() != first


def test_the_generated_pair_is_served_across_restarts(backend, tmp_path, pki):
    cert, key = tls.self_signed_pair(str(tmp_path), "vk-test", ["127.0.0.1"])
    served = []
    for _ in range(2):
        pair = tls.serving_pair(None, None, state_dir=str(tmp_path), node_name="vk-test")
        assert pair == (cert, key)
        server = KubeletServer(node_name="vk-test", backend=backend, ssl_context=tls.server_context(*pair, pki.ca_cert),
                               authenticator=Authenticator(None), authorizer=Authorizer("vk-test", None),
                               registry=CollectorRegistry(), address="127.0.0.1", port=0)
        server.start()
        try:
            served.append(_served_certificate(server.port))
            context = ssl.create_default_context(cafile=cert)  # the self-signed cert is its own trust anchor
            connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=5)
            connection.request("GET", "/healthz")
            assert connection.getresponse().read() == b"ok"
            connection.close()
        finally:
            server.stop()
    assert served[0] == served[1] == ssl.PEM_cert_to_DER_cert(open(cert).read())


def test_given_pair_is_used_as_is(tmp_path):
    pki = ClusterPKI("ca")
    write_pair(pki.issue_server_cert(), str(tmp_path / "s.crt"), str(tmp_path / "s.key"))
    pair = tls.serving_pair(str(tmp_path / "s.crt"), str(tmp_path / "s.key"), state_dir=str(tmp_path / "state"),
                            node_name="n")
    assert pair == (str(tmp_path / "s.crt"), str(tmp_path / "s.key"))
    assert not (tmp_path / "state").exists()


def test_mismatched_pair_is_refused_with_a_clear_error(tmp_path):
    pki = ClusterPKI("ca")
    write_pair(pki.issue_server_cert(), str(tmp_path / "a.crt"), str(tmp_path / "a.key"))
    write_pair(pki.issue_server_cert(), str(tmp_path / "b.crt"), str(tmp_path / "b.key"))
    with pytest.raises(ConfigError) as error:
        tls.serving_pair(str(tmp_path / "a.crt"), str(tmp_path / "b.key"), state_dir=str(tmp_path), node_name="n")
    message = str(error.value)
    assert message.startswith(f"invalid setting APISERVER_KEY_LOCATION='{tmp_path / 'b.key'}'")
    assert "does not match" in message and "APISERVER_CERT_LOCATION" in message
    with pytest.raises(ConfigError):
        tls.server_context(str(tmp_path / "a.crt"), str(tmp_path / "b.key"), None)


def test_unreadable_or_garbage_files_are_refused(tmp_path):
    (tmp_path / "junk.crt").write_text("not a certificate")
    pki = ClusterPKI("ca")
    write_pair(pki.issue_server_cert(), str(tmp_path / "a.crt"), str(tmp_path / "a.key"))
    with pytest.raises(ConfigError, match="APISERVER_CERT_LOCATION.*no certificate found"):
        tls.check_pair(str(tmp_path / "junk.crt"), str(tmp_path / "a.key"))
    with pytest.raises(ConfigError, match="APISERVER_KEY_LOCATION.*PEM private key"):
        tls.check_pair(str(tmp_path / "a.crt"), str(tmp_path / "junk.crt"))
    with pytest.raises(ConfigError, match="APISERVER_CA_CERT_LOCATION"):
        tls.server_context(str(tmp_path / "a.crt"), str(tmp_path / "a.key"), str(tmp_path / "junk.crt"))
    with pytest.raises(ConfigError, match="set together"):
        tls.serving_pair(str(tmp_path / "a.crt"), None, state_dir=str(tmp_path), node_name="n")


def test_context_is_tls12_plus_and_asks_for_client_certs(tmp_path):
    pki = ClusterPKI("ca")
    ca, _ = pki.write(str(tmp_path))
    write_pair(pki.issue_server_cert(), str(tmp_path / "a.crt"), str(tmp_path / "a.key"))
    context = tls.server_context(str(tmp_path / "a.crt"), str(tmp_path / "a.key"), ca)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert tls.server_context(str(tmp_path / "a.crt"), str(tmp_path / "a.key"), None).verify_mode == ssl.CERT_NONE
