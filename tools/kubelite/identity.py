"""Who is calling: users from verified client certificates and service-account tokens.

Owns the :class:`User` value and the authenticators the apiserver chains:
x509 client certs (CN = user, O = groups) and bearer tokens (our signed
service-account JWTs, checked against the store: the service account, and
the pod a token is bound to, must still exist with the same uid). TokenReview
answers with the same code. Knows no HTTP beyond a header value.
"""

from __future__ import annotations

import base64
import hmac
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from .store import Store
from .tokens import API_AUDIENCES, TokenInvalid, TokenSigner

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


BOOTSTRAP_TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
BOOTSTRAP_SECRET_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_GROUP = "system:bootstrappers"
_EXTRA_GROUP_RE = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")


def _secret_value(secret: dict, key: str) -> str:
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        return ""
    try:
        return base64.b64decode(raw).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def bootstrap_user(token: str, store: Store, now: float | None = None) -> User | None:
    """The user of a bootstrap token (``<id>.<secret>``) backed by ``kube-system/bootstrap-token-<id>``.

    As kube-apiserver's bootstrap authenticator: the Secret's type, token-secret, expiration,
    ``usage-bootstrap-authentication`` and ``auth-extra-groups`` decide; None when not valid.
    """
    m = BOOTSTRAP_TOKEN_RE.match(token)
    if m is None:
        return None
    token_id, token_secret = m.groups()
    entry = store.get("secrets", "kube-system", f"bootstrap-token-{token_id}")
    if entry is None:
        return None
    secret = entry.obj
    if secret.get("type") != BOOTSTRAP_SECRET_TYPE or secret["metadata"].get("deletionTimestamp"):
        return None
    if not hmac.compare_digest(_secret_value(secret, "token-secret").encode(), token_secret.encode()):
        return None
    if _secret_value(secret, "token-id") != token_id:
        return None
    expiration = _secret_value(secret, "expiration")
    if expiration:
        try:
            expires = datetime.fromisoformat(expiration.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
        if (time.time() if now is None else now) >= expires:
            return None
    if _secret_value(secret, "usage-bootstrap-authentication") != "true":
        return None
    groups = [BOOTSTRAP_GROUP]
    for g in _secret_value(secret, "auth-extra-groups").split(","):
        g = g.strip()
        if not g:
            continue
        if not _EXTRA_GROUP_RE.match(g):
            return None
        groups.append(g)
    return User(f"system:bootstrap:{token_id}", tuple(groups) + (AUTHENTICATED,))


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
        if BOOTSTRAP_TOKEN_RE.match(token):
            user = bootstrap_user(token, self._store, self._signer.now())
            if user is None:
                raise TokenInvalid("invalid bootstrap token")
            return user, list(audiences or API_AUDIENCES)
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
            node = (claims.raw.get("kubernetes.io") or {}).get("node") or {}
            if node.get("name"):
                extra["authentication.kubernetes.io/node-name"] = [node["name"]]
                extra["authentication.kubernetes.io/node-uid"] = [node.get("uid", "")]
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{claims.namespace}", AUTHENTICATED)
        return User(claims.username, groups, claims.sa_uid, extra), matched
