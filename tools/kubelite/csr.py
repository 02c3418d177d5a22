"""certificates.k8s.io/v1 CertificateSigningRequests: validation, requestor stamping, signer rules.

Owns what kube-apiserver checks of a CSR (PEM request, signerName, usages,
expirationSeconds >= 600), the requestor fields it fills from the caller, and
the shape rules of the kubelet signers (client: O=system:nodes,
CN=system:node:<name>, client auth, no SANs; serving: server auth, DNS/IP SANs)
that the approver and signer controllers use. Knows no HTTP and no store.
"""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.x509.oid import NameOID

KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
USAGES = ("signing", "digital signature", "content commitment", "key encipherment", "key agreement",
          "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
          "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
          "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc")
MIN_EXPIRATION_SECONDS = 600


def parse_request(obj: dict) -> x509.CertificateSigningRequest:
    """The x509 request of a CSR object (``spec.request``: base64 of a PEM block); ValueError if bad."""
    raw = base64.b64decode((obj.get("spec") or {}).get("request") or "")
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in raw:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    return x509.load_pem_x509_csr(raw)


def validate_csr(obj: dict) -> list[dict]:
    spec = obj.get("spec") or {}
    causes: list[dict] = []
    if not spec.get("request"):
        causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.request"})
    else:
        try:
            parse_request(obj)
        except ValueError as e:
            causes.append({"reason": "FieldValueInvalid", "field": "spec.request",
                           "message": f"Invalid value: []byte{{...}}: {e}"})
    if not spec.get("signerName"):
        causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.signerName"})
    usages = spec.get("usages")
    if not usages:
        causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.usages"})
    for i, u in enumerate(usages or []):
        if u not in USAGES:
            causes.append({"reason": "FieldValueNotSupported", "field": f"spec.usages[{i}]",
                           "message": f'Unsupported value: "{u}"'})
    exp = spec.get("expirationSeconds")
    if exp is not None and (not isinstance(exp, int) or exp < MIN_EXPIRATION_SECONDS):
        causes.append({"reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
                       "message": f"Invalid value: {exp}: may not specify a duration less than 600 seconds "
                                  f"(10 minutes)"})
    return causes


def stamp_requestor(obj: dict, user) -> None:
    """The apiserver overwrites spec.username/uid/groups/extra with the caller's identity."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict) or user is None:
        return
    spec["username"] = user.name
    spec["groups"] = list(user.groups)
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = user.extra


def _subject(req: x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    cn = [a.value for a in req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return (cn[0] if cn else ""), orgs


def _sans(req: x509.CertificateSigningRequest):
    try:
        return req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _not_a_node_subject(req: x509.CertificateSigningRequest) -> str:
    """"" when the subject is system:node:<name> in system:nodes (both kubelet signers ask it), else why not."""
    cn, orgs = _subject(req)
    if orgs != ["system:nodes"]:
        return 'subject organization is not system:nodes'
    if not cn.startswith("system:node:"):
        return 'subject common name does not begin with "system:node:"'
    return ""


def is_kubelet_client(req: x509.CertificateSigningRequest, usages) -> str:
    """"" when the request fits the kubelet client signer, else why not."""
    if why := _not_a_node_subject(req):
        return why
    if _sans(req) is not None:
        return "subject alternative names are not allowed"
    u = set(usages or [])
    if "client auth" not in u or not u <= {"digital signature", "key encipherment", "client auth"}:
        return "usages did not match [client auth] (optionally digital signature, key encipherment)"
    return ""


def is_kubelet_serving(req: x509.CertificateSigningRequest, usages) -> str:
    if why := _not_a_node_subject(req):
        return why
    sans = _sans(req)
    if sans is None or not (sans.get_values_for_type(x509.DNSName) or sans.get_values_for_type(x509.IPAddress)):
        return "DNS or IP subjectAltName is required"
    if sans.get_values_for_type(x509.RFC822Name) or sans.get_values_for_type(x509.UniformResourceIdentifier):
        return "Email and URI subjectAltNames are not allowed"
    u = set(usages or [])
    if "server auth" not in u or not u <= {"digital signature", "key encipherment", "server auth"}:
        return "usages did not match [server auth] (optionally digital signature, key encipherment)"
    return ""


def common_name(req: x509.CertificateSigningRequest) -> str:
    return _subject(req)[0]
