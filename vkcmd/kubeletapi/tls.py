"""The kubelet API's TLS: the serving pair (given, or self-signed once and kept) and the server context.

A given certificate and key are checked to be readable PEM that belong
together (by ``ssl`` and ``vkcmd.certfacts``: a node that reuses its pair does
not load ``cryptography``, ~11 MiB); when none is given, a self-signed pair is
generated on first start (``vkcmd.keymaker``, in a child process) and reused
afterwards (key written 0600, atomically). Problems raise :class:`TLSFileError` naming the setting at fault
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

from vkcmd import certfacts, keymaker

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


def _pem_certificates(path: str, setting: str) -> list[certfacts.CertificateFacts]:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise TLSFileError(setting, path, f"expected a readable PEM certificate file ({error.strerror})") from None
    try:
        certificates = [certfacts.der_facts(der) for der in certfacts.pem_certificates(data)]
    except ValueError:
        certificates = []
    if not certificates:
        raise TLSFileError(setting, path, "expected a PEM certificate (no certificate found in the file)")
    return certificates


def _no_passphrase() -> bytes:
    return b""  # an encrypted key fails to load, rather than OpenSSL asking for a passphrase on the terminal


def check_pair(cert_file: str, key_file: str) -> certfacts.CertificateFacts:
    """Raise TLSFileError unless ``cert_file`` and ``key_file`` are readable PEM and belong together;
    return the certificate's facts."""
    certificate = _pem_certificates(cert_file, CERT_ENV)[0]
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file, password=_no_passphrase)
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise TLSFileError(KEY_ENV, key_file, f"expected the private key of the certificate "
                                                 f"{CERT_ENV}={cert_file} (this key does not match it)") from None
        raise TLSFileError(KEY_ENV, key_file, "expected an unencrypted PEM private key") from None
    except OSError as error:  # (the certificate was read above: this is the key file)
        raise TLSFileError(KEY_ENV, key_file, f"expected a readable PEM private key file ({error.strerror})") from None
    return certificate


def check_client_ca(ca_file: str) -> None:
    """Raise TLSFileError unless ``ca_file`` holds at least one PEM certificate."""
    _pem_certificates(ca_file, CA_ENV)


def _usable(cert_file: Path, key_file: Path, now: datetime.datetime) -> bool:
    try:
        certificate = check_pair(str(cert_file), str(key_file))
    except TLSFileError:
        return False
    return certificate.not_after - RENEW_BEFORE > now


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
    # the kubelet's "<host>@<unix time>"; a CN holds at most 64 characters (the SAN carries the full name)
    dns, ips = [node_name, "localhost"], {ipaddress.ip_address("127.0.0.1")}
    for address in addresses:
        try:
            ips.add(ipaddress.ip_address(address))
        except ValueError:
            dns.append(address)
    try:
        key_pem, cert_pem = keymaker.self_signed(f"{node_name[:50]}@{int(now.timestamp())}", dns,
                                                 [str(ip) for ip in sorted(ips, key=str)],
                                                 not_before=now - datetime.timedelta(minutes=5),
                                                 not_after=now + datetime.timedelta(days=SELF_SIGNED_DAYS))
    except keymaker.KeyMakerError as error:
        raise TLSFileError("VK_STATE_DIR", state_dir, f"expected to make a self-signed pair there ({error})") \
            from None
    _write_private(key_file, key_pem, 0o600)
    _write_private(cert_file, cert_pem, 0o644)
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
