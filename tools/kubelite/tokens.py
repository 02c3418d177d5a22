"""Service-account tokens: RS256 JWTs shaped like the apiserver's bound tokens.

Owns the signing key, issuing (TokenRequest) and checking signature, expiry and
audience (the first half of TokenReview). Whether the service account and the
bound pod still exist is checked by the caller against the store; nothing here
knows HTTP or the store.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCES = (ISSUER,)
MIN_EXPIRATION_SECONDS = 600  # kube-apiserver's floor for a TokenRequest's expirationSeconds
#: Test knob (never set outside tests): a lower floor, so that token renewal can be watched in seconds.
MIN_EXPIRATION_ENV = "KUBELITE_TEST_MIN_TOKEN_EXPIRATION_SECONDS"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenInvalid(Exception):
    """The token is not one of ours, is tampered with, expired, or for another audience."""


@dataclass(frozen=True)
class Claims:
    namespace: str
    sa_name: str
    sa_uid: str
    audiences: tuple[str, ...]
    pod_name: str | None
    pod_uid: str | None
    jti: str
    raw: dict

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.sa_name}"


class TokenSigner:
    """Issues and verifies service-account JWTs with one RSA key generated at construction."""

    def __init__(self, clock=time.time, min_expiration_seconds: int | None = None):
        self._clock = clock
        if min_expiration_seconds is None:
            min_expiration_seconds = int(os.environ.get(MIN_EXPIRATION_ENV) or MIN_EXPIRATION_SECONDS)
        self.min_expiration_seconds = min_expiration_seconds
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = _b64(hashlib.sha256(der).digest())

    def now(self) -> float:
        return self._clock()

    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    def issue(self, namespace: str, sa_name: str, sa_uid: str, *, audiences: list[str] | None = None,
              expiration_seconds: int = 3600, pod: dict | None = None) -> tuple[str, int]:
        """A signed token and its expiry (epoch seconds). ``pod``: ``{"name", "uid"}`` when bound to a pod."""
        now = int(self._clock())
        exp = now + int(expiration_seconds)
        k8s = {"namespace": namespace, "serviceaccount": {"name": sa_name, "uid": sa_uid}}
        if pod:
            k8s["pod"] = {"name": pod["name"], "uid": pod.get("uid", "")}
            if pod.get("node"):
                k8s["node"] = dict(pod["node"])  # inferred from the pod, as kube-apiserver does
        claims = {
            "aud": list(audiences or API_AUDIENCES),
            "exp": exp,
            "iat": now,
            "iss": ISSUER,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": k8s,
            "nbf": now,
            "sub": f"system:serviceaccount:{namespace}:{sa_name}",
        }
        header = {"alg": "RS256", "kid": self.kid}
        signing_input = (_b64(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + _b64(json.dumps(claims, separators=(",", ":")).encode()))
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64(sig), exp

    def verify(self, token: str, audiences: list[str] | None = None) -> tuple[Claims, list[str]]:
        """Check signature, issuer, time and audience; return the claims and the matched audiences."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenInvalid("not a JWT")
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            sig = _unb64(parts[2])
        except (ValueError, UnicodeDecodeError) as e:
            raise TokenInvalid(f"malformed token: {e}") from None
        if header.get("alg") != "RS256" or claims.get("iss") != ISSUER:
            raise TokenInvalid("token is not a service account token of this cluster")
        try:
            self._key.public_key().verify(sig, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(),
                                          hashes.SHA256())
        except InvalidSignature:
            raise TokenInvalid("invalid bearer token, square/go-jose: error in cryptographic primitive") from None
        now = self._clock()
        if now >= claims.get("exp", 0):
            raise TokenInvalid("invalid bearer token, Token has expired.")
        if now + 60 < claims.get("nbf", 0):
            raise TokenInvalid("invalid bearer token, Token not valid yet.")
        token_aud = claims.get("aud") or []
        if isinstance(token_aud, str):
            token_aud = [token_aud]
        wanted = list(audiences) if audiences else list(API_AUDIENCES)
        matched = [a for a in wanted if a in token_aud]
        if not matched:
            raise TokenInvalid("invalid bearer token, token audiences "
                               f"{json.dumps(token_aud)} is invalid for the target audiences {json.dumps(wanted)}")
        k8s = claims.get("kubernetes.io") or {}
        sa = k8s.get("serviceaccount") or {}
        pod = k8s.get("pod") or {}
        return Claims(k8s.get("namespace", ""), sa.get("name", ""), sa.get("uid", ""), tuple(token_aud),
                      pod.get("name"), pod.get("uid"), claims.get("jti", ""), claims), matched
