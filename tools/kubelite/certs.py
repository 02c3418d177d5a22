"""The cluster PKI of kubelite: a CA, the serving cert, and client certs issued by it.

Owns key generation and X.509 issuing (``cryptography``), nothing else: no files
are written here except by :meth:`ClusterPKI.write`, and nothing here knows HTTP.
Keys are EC P-256 (fast to generate, accepted by Go and OpenSSL clients).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_USER = "kubernetes-admin"
ADMIN_GROUPS = ("system:masters",)
#: The identity a kubeadm cluster's apiserver uses towards kubelets (since 1.29).
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
KUBELET_CLIENT_GROUPS = ("kubeadm:cluster-admins",)

_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its PEM (PKCS#8, unencrypted) private key."""

    cert_pem: bytes
    key_pem: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str, orgs: tuple[str, ...] | list[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class ClusterPKI:
    """A freshly generated CA able to issue server and client certificates."""

    def __init__(self, ca_name: str = "kubernetes"):
        now = datetime.datetime.now(datetime.timezone.utc)
        self._ca_key = _key()
        subject = _name(ca_name)
        self._ca_cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + 10 * _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key()), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_cert_pem: bytes = self._ca_cert.public_bytes(serialization.Encoding.PEM)

    @property
    def ca_key_pem(self) -> bytes:
        return _key_pem(self._ca_key)

    def _leaf(self, subject: x509.Name, public_key, usage, lifetime: datetime.timedelta):
        """A builder for a CA-signed end-entity certificate (backdated 5 minutes for clock skew)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(self._ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                           critical=False)
        )

    def _issue(self, subject: x509.Name, usage, sans: list | None = None) -> CertPair:
        key = _key()
        builder = self._leaf(subject, key.public_key(), usage, _VALIDITY)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        return CertPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def issue_server_cert(self, hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")) -> CertPair:
        """A serving certificate for ``hosts`` (IPs and DNS names) plus the in-cluster names."""
        sans: list = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        for dns in ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local"):
            sans.append(x509.DNSName(dns))
        return self._issue(_name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans)

    def issue_client_cert(self, cn: str, groups: tuple[str, ...] | list[str] = ()) -> CertPair:
        """A client certificate for user ``cn`` in ``groups`` (subject O=...), as the apiserver reads them."""
        return self._issue(_name(cn, tuple(groups)), ExtendedKeyUsageOID.CLIENT_AUTH)

    def sign_request(self, req: x509.CertificateSigningRequest, seconds: int, server: bool) -> bytes:
        """Issue the PEM certificate for a CSR's subject, key and SANs, valid ``seconds`` (backdated 5 min)."""
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = self._leaf(req.subject, req.public_key(), usage, datetime.timedelta(seconds=seconds))
        try:
            sans = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            builder = builder.add_extension(sans, critical=False)
        except x509.ExtensionNotFound:
            pass
        return builder.sign(self._ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def write(self, directory: str) -> tuple[str, str]:
        """Write ``ca.crt`` (0644) and ``ca.key`` (0600) into ``directory``; return both paths."""
        crt = os.path.join(directory, "ca.crt")
        key = os.path.join(directory, "ca.key")
        with open(crt, "wb") as f:
            f.write(self.ca_cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.ca_key_pem)
        return crt, key


def write_pair(pair: CertPair, cert_path: str, key_path: str) -> None:
    """Write a cert (0644) and its key (0600)."""
    with open(cert_path, "wb") as f:
        f.write(pair.cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pair.key_pem)
