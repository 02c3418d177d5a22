"""Who is calling and may they: the kubelet's authentication and authorization, with caches.

Authentication: a client certificate already verified by TLS against the client
CA (user = CN, groups = O), else a bearer token checked by an injected TokenReview
callable. Authorization: the kubelet's mapping of a request to attributes on the
``nodes`` resource (:func:`request_attributes`), checked by an injected
SubjectAccessReview callable; allowed if any attribute is. Results are cached
briefly (tokens by a hash, never the token itself). The review callables take
and return plain dicts (``vkcmd.kube.reviews`` provides them), so this module
knows no API client. No HTTP here.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from vkcmd.kubeletapi.backend import Forbidden, Unauthorized, Unavailable

log = logging.getLogger("vkcmd.kubeletapi.auth")

#: token -> TokenReview ``status.user`` dict ({username, uid, groups, extra}) or None when not authenticated;
#: raises on a failed call (not cached; the request gets 401 as with the kubelet).
TokenReview = Callable[[str], "Mapping[str, Any] | None"]
#: SubjectAccessReview ``spec`` dict -> (allowed, reason); raises on a failed call (the request gets 500).
AccessReview = Callable[[Mapping[str, Any]], "tuple[bool, str]"]

TOKEN_ALLOWED_TTL = 120.0
TOKEN_DENIED_TTL = 30.0
ACCESS_ALLOWED_TTL = 300.0
ACCESS_DENIED_TTL = 30.0


@dataclass(frozen=True)
class User:
    """An authenticated caller. ``extra`` is a sorted tuple of (key, values) so a User can key a cache."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    @classmethod
    def from_review(cls, user: Mapping[str, Any]) -> User:
        extra = user.get("extra") or {}
        return cls(name=str(user.get("username") or ""), groups=tuple(user.get("groups") or ()),
                   uid=str(user.get("uid") or ""),
                   extra=tuple(sorted((str(k), tuple(v or ())) for k, v in extra.items())))


@dataclass(frozen=True)
class Attributes:
    """What a request does, in the kubelet's terms: ``verb`` on ``nodes/<subresource>`` named ``name``."""

    verb: str
    subresource: str
    name: str
    path: str = ""
    resource: str = "nodes"
    api_group: str = ""
    api_version: str = "v1"


# --- the kubelet's path -> attributes mapping (pure) ---------------------------------------

_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
# Fine-grained subresources tried before "proxy" (KubeletFineGrainedAuthz, on by default since 1.33).
_FINE_GRAINED = (("/pods", "pods"), ("/healthz", "healthz"), ("/configz", "configz"), ("/statusz", "statusz"),
                 ("/runningpods", "pods"))
_SPECIFIC = (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log"), ("/spec", "spec"),
             ("/checkpoint", "checkpoint"))


def is_subpath(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` or below it (``/statsx`` is not below ``/stats``)."""
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def api_verb(method: str) -> str:
    """The API verb the kubelet authorizes an HTTP method as ("" for methods it does not map)."""
    return _VERBS.get(method.upper(), "")


def subresources(path: str) -> tuple[str, ...]:
    """The subresources a path is authorized as, most specific first (``proxy`` is the catch-all)."""
    found = [name for prefix, name in _FINE_GRAINED if is_subpath(path, prefix)][:1]
    specific = [name for prefix, name in _SPECIFIC if is_subpath(path, prefix)][:1]
    return tuple(found + (specific or ["proxy"]))


def request_attributes(node_name: str, method: str, path: str) -> tuple[Attributes, ...]:
    """Every attribute set the request may be allowed by (allowed if any one is)."""
    verb = api_verb(method)
    return tuple(Attributes(verb, sub, node_name, path) for sub in subresources(path))


def describe(user: User, attributes: Sequence[Attributes]) -> str:
    """``user=..., verb=..., resource=nodes, subresource(s)=[a b]`` as the kubelet words it."""
    first = attributes[0]
    return (f"user={user.name}, verb={first.verb}, resource={first.resource}, "
            f"subresource(s)=[{' '.join(a.subresource for a in attributes)}]")


def access_review_spec(user: User, attributes: Attributes) -> dict[str, Any]:
    """The ``spec`` of the SubjectAccessReview the kubelet would send."""
    spec: dict[str, Any] = {
        "user": user.name,
        "groups": list(user.groups),
        "resourceAttributes": {"verb": attributes.verb, "group": attributes.api_group,
                               "version": attributes.api_version, "resource": attributes.resource,
                               "subresource": attributes.subresource, "name": attributes.name},
    }
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {key: list(values) for key, values in user.extra}
    return spec


def user_from_certificate(peer_cert: Mapping[str, Any] | None) -> User | None:
    """User from a TLS-verified client certificate (``ssl.getpeercert()`` dict): CN and O entries."""
    if not peer_cert:
        return None
    common_name, organizations = "", []
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and not common_name:
                common_name = value
            elif key == "organizationName":
                organizations.append(value)
    return User(common_name, tuple(organizations)) if common_name else None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


# --- caches ---------------------------------------------------------------------------------

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A small thread-safe cache whose entries expire after their own TTL; the oldest go first when full."""

    def __init__(self, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            return entry[1]

    def put(self, key: K, value: V, ttl: float) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


_NOT_AUTHENTICATED = User("")  # cached negative token result


class Authenticator:
    """Client certificate first, then bearer token (TokenReview, cached by the token's SHA-256)."""

    def __init__(self, review_token: TokenReview | None, *, clock: Callable[[], float] = time.monotonic,
                 allowed_ttl: float = TOKEN_ALLOWED_TTL, denied_ttl: float = TOKEN_DENIED_TTL) -> None:
        self._review = review_token
        self._cache: TTLCache[str, User] = TTLCache(clock=clock)
        self._allowed_ttl = allowed_ttl
        self._denied_ttl = denied_ttl
        self.reviews = 0  # TokenReview calls made (cache misses)

    def authenticate(self, peer_cert: Mapping[str, Any] | None, authorization: str | None) -> User:
        """The caller, or :class:`Unauthorized`."""
        user = user_from_certificate(peer_cert)
        if user is not None:
            return user
        token = bearer_token(authorization)
        if token is None or self._review is None:
            raise Unauthorized("Unauthorized")
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is None:
            self.reviews += 1
            try:
                reviewed = self._review(token)
            except Exception as error:  # the API is unreachable or refused the review
                log.warning("token review failed: %s", error)
                raise Unauthorized("Unauthorized") from None
            if reviewed and reviewed.get("username"):
                cached = User.from_review(reviewed)
                self._cache.put(key, cached, self._allowed_ttl)
            else:
                cached = _NOT_AUTHENTICATED
                self._cache.put(key, cached, self._denied_ttl)
        if cached is _NOT_AUTHENTICATED:
            raise Unauthorized("Unauthorized")
        return cached


class Authorizer:
    """SubjectAccessReview on the request's attributes (cached); ``review_access=None`` allows all."""

    def __init__(self, node_name: str, review_access: AccessReview | None, *,
                 clock: Callable[[], float] = time.monotonic, allowed_ttl: float = ACCESS_ALLOWED_TTL,
                 denied_ttl: float = ACCESS_DENIED_TTL) -> None:
        self.node_name = node_name
        self._review = review_access
        self._cache: TTLCache[tuple[User, Attributes], bool] = TTLCache(clock=clock)
        self._allowed_ttl = allowed_ttl
        self._denied_ttl = denied_ttl
        self.reviews = 0  # SubjectAccessReview calls made (cache misses)

    @property
    def always_allow(self) -> bool:
        return self._review is None

    def authorize(self, user: User, method: str, path: str) -> None:
        """Return if allowed; else :class:`Forbidden` (denied) or :class:`Unavailable` (review failed)."""
        if self._review is None:
            return
        attributes = request_attributes(self.node_name, method, path)
        for attrs in attributes:
            if self._allowed(user, attrs, attributes):
                return
        log.debug("forbidden: %s", describe(user, attributes))
        raise Forbidden(f"Forbidden ({describe(user, attributes)})")

    def _allowed(self, user: User, attrs: Attributes, everything: Sequence[Attributes]) -> bool:
        key = (user, Attributes(attrs.verb, attrs.subresource, attrs.name))  # the path does not matter
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        self.reviews += 1
        try:
            allowed, _reason = self._review(access_review_spec(user, attrs))
        except Exception as error:
            log.warning("access review failed for %s: %s", describe(user, everything), error)
            raise Unavailable(f"Authorization error ({describe(user, everything)})") from None
        self._cache.put(key, bool(allowed), self._allowed_ttl if allowed else self._denied_ttl)
        return bool(allowed)
