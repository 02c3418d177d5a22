"""The kubelet API's TLS: the serving pair (given, or self-signed once and kept) and the server context.

A given certificate and key are checked to be readable PEM that belong
together; when none is given, a self-signed pair is generated with
``cryptography`` on first start and reused afterwards (key written 0600,
atomically). Problems raise :class:`TLSFileError` naming the setting at fault
(``vkcmd.serving`` turns it into the config error the entry point prints). The server context requires TLS 1.2+
and asks for (but does not require) a client certificate, so token callers can
connect too.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


log = logging.getLogger("vkcmd.kubeletapi.tls")

CERT_ENV = "APISERVER_CERT_LOCATION"
KEY_ENV = "APISERVER_KEY_LOCATION"
CA_ENV = "APISERVER_CA_CERT_LOCATION"
SELF_SIGNED_CERT = "kubelet-serving.crt"
SELF_SIGNED_KEY = "kubelet-serving.key"
SELF_SIGNED_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=7)


class TLSFileError(ValueError):
    """A certificate, key or CA file (named by its ``setting``) that TLS cannot serve with."""

    def __init__(self, setting: str, value: str, accepted: str) -> None:
        super().__init__(f"invalid setting {setting}={value!r}: {accepted}")
        self.setting = setting
        self.value = value
        self.accepted = accepted


def _pem_certificates(path: str, setting: str) -> list[x509.Certificate]:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise TLSFileError(setting, path, f"expected a readable PEM certificate file ({error.strerror})") from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise TLSFileError(setting, path, "expected a PEM certificate (no certificate found in the file)")
    return certificates


def check_pair(cert_file: str, key_file: str) -> None:
    """Raise TLSFileError unless ``cert_file`` and ``key_file`` are readable PEM and belong together."""
    certificate = _pem_certificates(cert_file, CERT_ENV)[0]
    try:
        key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    except OSError as error:
        raise TLSFileError(KEY_ENV, key_file, f"expected a readable PEM private key file ({error.strerror})") from None
    except (ValueError, TypeError):
        raise TLSFileError(KEY_ENV, key_file, "expected an unencrypted PEM private key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.PEM, public) != \
            certificate.public_key().public_bytes(serialization.Encoding.PEM, public):
        raise TLSFileError(KEY_ENV, key_file, f"expected the private key of the certificate {CERT_ENV}={cert_file} "
                                             "(this key does not match it)")


def check_client_ca(ca_file: str) -> None:
    """Raise TLSFileError unless ``ca_file`` holds at least one PEM certificate."""
    _pem_certificates(ca_file, CA_ENV)


def _usable(cert_file: Path, key_file: Path, now: datetime.datetime) -> bool:
    try:
        check_pair(str(cert_file), str(key_file))
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (TLSFileError, ValueError, OSError):
        return False
    return certificate.not_valid_after_utc - RENEW_BEFORE > now


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, the file created with ``mode`` from the start."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def self_signed_pair(state_dir: str, node_name: str, addresses: Sequence[str] = (),
                     now: datetime.datetime | None = None) -> tuple[str, str]:
    """(cert path, key path) of the node's self-signed serving pair, generated once and kept in ``state_dir``.

    An existing pair is reused while it is valid for another week; otherwise a
    new one (ECDSA P-256, a year, SANs: the node name, ``localhost``, 127.0.0.1
    and ``addresses``) replaces it.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    directory = Path(state_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise TLSFileError("VK_STATE_DIR", state_dir, f"expected a directory vkcmd can create ({error.strerror})") \
            from None
    cert_file, key_file = directory / SELF_SIGNED_CERT, directory / SELF_SIGNED_KEY
    if _usable(cert_file, key_file, now):
        return str(cert_file), str(key_file)
    key = ec.generate_private_key(ec.SECP256R1())
    # the kubelet's "<host>@<unix time>"; a CN holds at most 64 characters (the SAN carries the full name)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name[:50]}@{int(now.timestamp())}")])
    dns = [x509.DNSName(node_name), x509.DNSName("localhost")]
    ips = {ipaddress.ip_address("127.0.0.1")}
    for address in addresses:
        try:
            ips.add(ipaddress.ip_address(address))
        except ValueError:
            dns.append(x509.DNSName(address))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(dns + [x509.IPAddress(ip) for ip in sorted(ips, key=str)]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), 0o600)
    _write_private(cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("generated a self-signed kubelet serving certificate", extra={"fields": {"cert": str(cert_file)}})
    return str(cert_file), str(key_file)


def serving_pair(cert_file: str | None, key_file: str | None, *, state_dir: str, node_name: str,
                 addresses: Sequence[str] = ()) -> tuple[str, str]:
    """The pair to serve: the given one (checked), else the self-signed one in ``state_dir``."""
    if cert_file and key_file:
        check_pair(cert_file, key_file)
        return cert_file, key_file
    if cert_file or key_file:
        missing = KEY_ENV if cert_file else CERT_ENV
        raise TLSFileError(missing, "", f"expected {CERT_ENV} and {KEY_ENV} to be set together")
    return self_signed_pair(state_dir, node_name, addresses)


def server_context(cert_file: str, key_file: str, client_ca_file: str | None) -> ssl.SSLContext:
    """TLS 1.2+ server context; verifies client certificates against ``client_ca_file`` when one is sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as error:
        check_pair(cert_file, key_file)  # names the file at fault when it can
        raise TLSFileError(CERT_ENV, cert_file, f"expected a certificate and key TLS can serve ({error.reason})") \
            from None
    if client_ca_file:
        check_client_ca(client_ca_file)
        try:
            context.load_verify_locations(cafile=client_ca_file)
        except ssl.SSLError as error:
            raise TLSFileError(CA_ENV, client_ca_file, f"expected PEM CA certificates ({error.reason})") from None
        context.verify_mode = ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context
