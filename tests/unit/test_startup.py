"""Start-up refuses a serving certificate that does not match its key: one line, exit 2, nothing registered."""

import datetime
import os
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def _self_signed(key):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vk")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_mismatched_serving_pair_stops_start_up_with_one_line(tmp_path):
    key_a, key_b = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "tls.crt").write_bytes(_self_signed(key_a))
    (tmp_path / "tls.key").write_bytes(key_b.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "kubeconfig"),
           "APISERVER_CERT_LOCATION": str(tmp_path / "tls.crt"), "APISERVER_KEY_LOCATION": str(tmp_path / "tls.key"),
           "NODENAME": "vk"}
    result = subprocess.run([sys.executable, "-m", "vkcmd"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("vkcmd:")]
    assert len(lines) == 1 and "APISERVER" in lines[0], result.stderr
