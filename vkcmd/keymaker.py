"""Making keys, self-signed serving certificates and CSRs, in a short-lived child process.

``cryptography`` is needed only to make a key pair (a node's first start, a renewal), yet once
imported it stays mapped for the node's life: ~11 MiB of RSS per node, ×20 nodes on a host. So the
node runs ``python -m vkcmd.keymaker`` for each pair, request as JSON on stdin, PEMs as JSON on
stdout (a pipe: the key never touches a file here; the caller writes it 0600). Knows nothing of
where the results are written or of the API.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any


class KeyMakerError(RuntimeError):
    """The child could not make what was asked (the message is its last line of stderr)."""


def self_signed(common_name: str, dns: Sequence[str], ips: Sequence[str], *, not_before: datetime.datetime,
                not_after: datetime.datetime) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM): ECDSA P-256, a server-auth leaf signed by itself."""
    made = _in_child({"kind": "self_signed", "common_name": common_name, "dns": list(dns), "ips": list(ips),
                      "not_before": not_before.timestamp(), "not_after": not_after.timestamp()})
    return made["key"].encode(), made["certificate"].encode()


def key_and_csr(common_name: str, organizations: Sequence[str], *, dns: Sequence[str] = (),
                ips: Sequence[str] = ()) -> tuple[bytes, bytes]:
    """(key PEM, CSR PEM): a fresh P-256 key and a request for it with the given subject and names."""
    made = _in_child({"kind": "csr", "common_name": common_name, "organizations": list(organizations),
                      "dns": list(dns), "ips": list(ips)})
    return made["key"].encode(), made["csr"].encode()


def _in_child(request: dict[str, Any]) -> dict[str, str]:
    try:
        done = subprocess.run([sys.executable, "-m", "vkcmd.keymaker"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise KeyMakerError(f"cannot run the key maker: {error}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise KeyMakerError(f"making a key failed: {last}")
    return json.loads(done.stdout)


# --- the child ---------------------------------------------------------------------------------

def _make(request: dict[str, Any]) -> dict[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    names = ([x509.DNSName(d) for d in request["dns"]]
             + [x509.IPAddress(ipaddress.ip_address(i)) for i in request["ips"]])
    if request["kind"] == "csr":
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in request["organizations"]]
                            + [x509.NameAttribute(NameOID.COMMON_NAME, request["common_name"])])
        builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        csr = builder.sign(key, hashes.SHA256())
        return {"key": key_pem, "csr": csr.public_bytes(serialization.Encoding.PEM).decode()}
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, request["common_name"])])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime.fromtimestamp(request["not_before"], datetime.timezone.utc))
        .not_valid_after(datetime.datetime.fromtimestamp(request["not_after"], datetime.timezone.utc))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return {"key": key_pem, "certificate": certificate.public_bytes(serialization.Encoding.PEM).decode()}


def main() -> int:
    try:
        made = _make(json.load(sys.stdin))
    except (ValueError, KeyError, TypeError) as error:
        print(f"vkcmd.keymaker: {error}", file=sys.stderr)
        return 1
    json.dump(made, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
