"""What a node reads from its certificates at every start - subject names and expiry - without ``cryptography``.

A few lines of DER reading (the X.509 TBSCertificate up to its subject), so
that a node which only checks the certificates it has does not load
``cryptography`` (~11 MiB of RSS once used); making keys and certificates stays
with ``cryptography``. It verifies nothing: trust is the TLS library's job.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from dataclasses import dataclass

_BEGIN, _END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
_COMMON_NAME, _ORGANIZATION = b"\x55\x04\x03", b"\x55\x04\x0a"  # 2.5.4.3, 2.5.4.10
_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}


@dataclass(frozen=True)
class CertificateFacts:
    common_names: tuple[str, ...]
    organizations: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime


def pem_certificates(pem: bytes) -> list[bytes]:
    """The DER of every PEM certificate block in ``pem`` (none: an empty list)."""
    found, at = [], 0
    while (start := pem.find(_BEGIN, at)) >= 0:
        end = pem.find(_END, start)
        if end < 0:
            raise ValueError("a PEM certificate block without its END line")
        try:
            found.append(base64.b64decode(b"".join(pem[start + len(_BEGIN):end].split()), validate=True))
        except binascii.Error:
            raise ValueError("a PEM certificate block that is not base64") from None
        at = end + len(_END)
    return found


def facts(pem: bytes) -> CertificateFacts:
    """The subject's CNs and Os and the validity of the first certificate in ``pem``; ValueError if none."""
    certificates = pem_certificates(pem)
    if not certificates:
        raise ValueError("no PEM certificate")
    return der_facts(certificates[0])


def der_facts(der: bytes) -> CertificateFacts:
    tag, start, end = _tlv(der, 0)
    _expect(tag, 0x30)
    tag, start, end = _tlv(der, start)  # tbsCertificate
    _expect(tag, 0x30)
    fields = list(_children(der, start, end))
    if fields and fields[0][0] == 0xA0:  # version [0] EXPLICIT, absent in v1
        fields = fields[1:]
    if len(fields) < 5:
        raise ValueError("a certificate without validity and subject")
    _, _, _, (validity_tag, vs, ve), (subject_tag, ss, se) = fields[:5]
    _expect(fields[0][0], 0x02)
    _expect(validity_tag, 0x30)
    _expect(subject_tag, 0x30)
    times = [_time(der, tag, s, e) for tag, s, e in _children(der, vs, ve)]
    if len(times) != 2:
        raise ValueError("a validity without two times")
    names, orgs = [], []
    for rdn_tag, rs, re_ in _children(der, ss, se):
        _expect(rdn_tag, 0x31)
        for attr_tag, as_, ae in _children(der, rs, re_):
            _expect(attr_tag, 0x30)
            parts = list(_children(der, as_, ae))
            if len(parts) != 2 or parts[0][0] != 0x06:
                raise ValueError("a name attribute that is not (OID, value)")
            oid = der[parts[0][1]:parts[0][2]]
            if oid in (_COMMON_NAME, _ORGANIZATION):
                value_tag, s, e = parts[1]
                if value_tag not in _STRINGS:
                    raise ValueError(f"a name value of ASN.1 type {value_tag:#x}")
                text = der[s:e].decode(_STRINGS[value_tag])
                (names if oid == _COMMON_NAME else orgs).append(text)
    return CertificateFacts(tuple(names), tuple(orgs), times[0], times[1])


def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``at``."""
    if at + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or at + count > len(data):
            raise ValueError("a DER length that is not definite")
        length = int.from_bytes(data[at:at + count], "big")
        at += count
    if at + length > len(data):
        raise ValueError("truncated DER")
    return tag, at, at + length


def _children(data: bytes, start: int, end: int):
    while start < end:
        tag, s, e = _tlv(data, start)
        if e > end:
            raise ValueError("a DER element beyond its parent")
        yield tag, s, e
        start = e


def _expect(tag: int, wanted: int) -> None:
    if tag != wanted:
        raise ValueError(f"not an X.509 certificate (ASN.1 tag {tag:#x} where {wanted:#x} belongs)")


def _time(data: bytes, tag: int, start: int, end: int) -> datetime.datetime:
    """UTCTime (YYMMDDHHMMSSZ; 50-99 are 19xx, RFC 5280) or GeneralizedTime (YYYYMMDDHHMMSSZ)."""
    text = data[start:end].decode("ascii")
    if tag == 0x17 and len(text) == 13 and text.endswith("Z"):
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18 or len(text) != 15 or not text.endswith("Z"):
        raise ValueError("a certificate time that is neither UTCTime nor GeneralizedTime in UTC")
    return datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
