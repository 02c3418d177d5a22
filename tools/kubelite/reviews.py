"""Review resources answered, never stored: TokenReview and the SubjectAccessReviews.

TokenReview checks our service-account tokens (signature, expiry, audience,
service account and bound pod still present); the access reviews ask RBAC
through :mod:`.policy`. Each returns ``(201, body)``. No HTTP here.
"""

from __future__ import annotations

from . import errors, policy
from .identity import TokenAuthenticator, User
from .store import StoreView
from .tokens import TokenInvalid


def token_review(auth: TokenAuthenticator, body: dict) -> tuple[int, dict]:
    spec = (body or {}).get("spec") or {}
    token = spec.get("token") or ""
    status: dict
    try:
        if not token:
            raise TokenInvalid("token is empty")
        user, matched = auth.authenticate(token, spec.get("audiences") or None)
        status = {"authenticated": True, "user": user.info(), "audiences": matched}
    except TokenInvalid as e:
        status = {"authenticated": False, "user": {}, "error": str(e)}
    return 201, {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                 "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}


def _attrs(spec: dict) -> dict:
    if spec.get("resourceAttributes") is not None:
        return {"resourceAttributes": spec["resourceAttributes"]}
    if spec.get("nonResourceAttributes") is not None:
        return {"nonResourceAttributes": spec["nonResourceAttributes"]}
    raise errors.invalid("SubjectAccessReview", "", [{
        "reason": "FieldValueRequired", "field": "spec.resourceAttributes",
        "message": "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified"}],
        "authorization.k8s.io")


def _decide(user: str, groups, attrs: dict, view: StoreView) -> dict:
    allowed, reason = policy.authorize(user, list(groups), attrs, view)
    status = {"allowed": bool(allowed)}
    if reason:
        status["reason"] = reason
    return status


def subject_access_review(view: StoreView, body: dict, kind: str = "SubjectAccessReview",
                          namespace: str | None = None) -> tuple[int, dict]:
    spec = (body or {}).get("spec") or {}
    if not spec.get("user") and not spec.get("groups"):
        raise errors.invalid(kind, "", [{"reason": "FieldValueInvalid", "field": "spec.user",
                                         "message": 'Invalid value: "": at least one of user or group must be '
                                                    'specified'}], "authorization.k8s.io")
    attrs = _attrs(spec)
    if namespace is not None:
        ra = attrs.get("resourceAttributes")
        if ra is None or ra.get("namespace", "") != namespace:
            raise errors.invalid(kind, "", [{"reason": "FieldValueInvalid",
                                             "field": "spec.resourceAttributes.namespace",
                                             "message": "Invalid value: must match metadata.namespace"}],
                                 "authorization.k8s.io")
    meta = {"creationTimestamp": None}
    if namespace is not None:
        meta["namespace"] = namespace
    return 201, {"kind": kind, "apiVersion": "authorization.k8s.io/v1", "metadata": meta, "spec": spec,
                 "status": _decide(spec.get("user", ""), spec.get("groups") or [], attrs, view)}


def self_subject_access_review(view: StoreView, user: User, body: dict) -> tuple[int, dict]:
    spec = (body or {}).get("spec") or {}
    attrs = _attrs(spec)
    return 201, {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                 "metadata": {"creationTimestamp": None}, "spec": spec,
                 "status": _decide(user.name, user.groups, attrs, view)}
