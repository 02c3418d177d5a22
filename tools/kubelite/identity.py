"""Who is calling: users from verified client certificates and service-account tokens.

Owns the :class:`User` value and the authenticators the apiserver chains:
x509 client certs (CN = user, O = groups) and bearer tokens (our signed
service-account JWTs, checked against the store: the service account, and
the pod a token is bound to, must still exist with the same uid). TokenReview
answers with the same code. Knows no HTTP beyond a header value.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .store import Store
from .tokens import TokenInvalid, TokenSigner

AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    uid: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_master(self) -> bool:
        return MASTERS in self.groups

    def info(self) -> dict:
        """The ``UserInfo`` shape of TokenReview and SubjectAccessReview."""
        out: dict = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra
        return out


def user_from_peercert(peercert: dict | None) -> User | None:
    """The user of a client certificate already verified by the TLS layer (None: no cert)."""
    if not peercert:
        return None
    cn, orgs = "", []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    if not cn:
        return None
    return User(cn, tuple(orgs) + (AUTHENTICATED,))


class TokenAuthenticator:
    """Turns a bearer token into a :class:`User`, or raises :class:`TokenInvalid`.

    Verified tokens are cached by value until they expire; the store checks
    (service account and pod still there) run on every call.
    """

    def __init__(self, signer: TokenSigner, store: Store):
        self._signer = signer
        self._store = store
        self._cache: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def authenticate(self, token: str, audiences: list[str] | None = None) -> tuple[User, list[str]]:
        key = token if not audiences else None
        hit = self._cache.get(key) if key else None
        if hit is not None and hit[0].raw.get("exp", 0) > self._signer.now():
            claims, matched = hit
        else:
            claims, matched = self._signer.verify(token, audiences)
            if key:
                with self._lock:
                    if len(self._cache) > 4096:
                        self._cache.clear()
                    self._cache[key] = (claims, matched)
        sa = self._store.get("serviceaccounts", claims.namespace, claims.sa_name)
        if sa is None:
            raise TokenInvalid(f'serviceaccounts "{claims.sa_name}" not found')
        if claims.sa_uid and sa.obj["metadata"].get("uid") != claims.sa_uid:
            raise TokenInvalid(f"service account UID ({claims.sa_uid}) does not match claim "
                               f"({sa.obj['metadata'].get('uid')})")
        extra: dict = {"authentication.kubernetes.io/credential-id": [f"JTI={claims.jti}"]}
        if claims.pod_name:
            pod = self._store.get("pods", claims.namespace, claims.pod_name)
            if pod is None:
                raise TokenInvalid(f'pods "{claims.pod_name}" not found')
            if claims.pod_uid and pod.obj["metadata"].get("uid") != claims.pod_uid:
                raise TokenInvalid(f"pod UID ({pod.obj['metadata'].get('uid')}) does not match claim "
                                   f"({claims.pod_uid})")
            extra["authentication.kubernetes.io/pod-name"] = [claims.pod_name]
            extra["authentication.kubernetes.io/pod-uid"] = [claims.pod_uid or ""]
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{claims.namespace}", AUTHENTICATED)
        return User(claims.username, groups, claims.sa_uid, extra), matched
