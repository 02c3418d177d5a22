"""``vkcmd.certfacts`` (subject names and validity read from DER) against ``cryptography`` on many certificates."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tools.kubelite.certs import ClusterPKI
from vkcmd import certfacts

NOW = datetime.datetime(2026, 12, 2, 4, 0, 0, tzinfo=datetime.timezone.utc)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(attributes, *, key=EC_KEY, not_before=NOW, not_after=NOW + datetime.timedelta(days=365),
                 version=x509.Version.v3) -> bytes:
    name = x509.Name(attributes)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(x509.Name([]) if not attributes else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))
    if version is x509.Version.v3:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


CN, O = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME
PKI = ClusterPKI()
CASES = {
    "node": _certificate([x509.NameAttribute(O, "system:nodes"), x509.NameAttribute(CN, "system:node:vk-1")]),
    "several groups": _certificate([x509.NameAttribute(O, "a"), x509.NameAttribute(O, "b"),
                                    x509.NameAttribute(CN, "user")]),
    "unicode": _certificate([x509.NameAttribute(CN, "nœud-é-😀"), x509.NameAttribute(O, "ünï")]),
    "printable": _certificate([x509.NameAttribute(CN, "plain", _type=x509.name._ASN1Type.PrintableString)]),
    "no cn": _certificate([x509.NameAttribute(O, "only-org"), x509.NameAttribute(NameOID.COUNTRY_NAME, "US")]),
    "rsa, long names": _certificate([x509.NameAttribute(CN, "x" * 64), x509.NameAttribute(O, "y" * 64)],
                                    key=RSA_KEY),
    "after 2050": _certificate([x509.NameAttribute(CN, "far")], not_after=datetime.datetime(
        2075, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)),
    "before 2000": _certificate([x509.NameAttribute(CN, "old")], not_before=datetime.datetime(
        1999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)),
    "v1": _certificate([x509.NameAttribute(CN, "v1")], version=x509.Version.v1),
    "kubelite client": PKI.issue_client_cert("system:node:vk", ("system:nodes",)).cert_pem,
    "kubelite serving": PKI.issue_server_cert().cert_pem,
    "kubelite ca": PKI.ca_cert_pem,
    "key before the certificate": PKI.issue_client_cert("one-pem").key_pem + PKI.issue_client_cert("one-pem").cert_pem,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_as_cryptography(case):
    pem = CASES[case]
    theirs = x509.load_pem_x509_certificate(pem)
    ours = certfacts.facts(pem)
    assert list(ours.common_names) == [a.value for a in theirs.subject.get_attributes_for_oid(CN)]
    assert list(ours.organizations) == [a.value for a in theirs.subject.get_attributes_for_oid(O)]
    assert ours.not_after == theirs.not_valid_after_utc
    assert ours.not_before == theirs.not_valid_before_utc


def test_every_certificate_of_a_bundle():
    bundle = CASES["node"] + b"\n" + CASES["kubelite ca"]
    assert len(certfacts.pem_certificates(bundle)) == len(x509.load_pem_x509_certificates(bundle)) == 2


@pytest.mark.parametrize("pem", [
    b"", b"not a certificate", CASES["node"][:200], CASES["node"].replace(b"-----END CERTIFICATE-----", b""),
    b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",  # SEQUENCE { INTEGER 1 }
    PKI.issue_client_cert("k").key_pem,
])
def test_what_is_not_a_certificate_is_a_value_error(pem):
    with pytest.raises(ValueError):
        x509.load_pem_x509_certificate(pem)  # the oracle refuses it ...
    with pytest.raises(ValueError):  # ... and so do we, without a crash of another kind
        certfacts.facts(pem)


def test_truncated_der_at_every_length_is_a_value_error():
    der = certfacts.pem_certificates(CASES["node"])[0]
    for cut in range(0, len(der) - 1, 7):
        with pytest.raises(ValueError):
            certfacts.der_facts(der[:cut])
