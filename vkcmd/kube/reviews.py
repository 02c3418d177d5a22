"""TokenReview and SubjectAccessReview calls for the kubelet API's authentication and authorization.

Each reviewer is a callable of plain dicts (what ``vkcmd.kubeletapi.auth``
injects): :class:`TokenReviewer` maps a bearer token to the TokenReview's
``status.user`` (or None), :class:`AccessReviewer` maps a SubjectAccessReview
``spec`` to (allowed, reason). Calls go through :class:`~vkcmd.kube.client.KubeClient`;
failures raise its ``ApiError`` (the caller decides: 401 or 500, never cached).
The caching of answers is the caller's (``auth.Authenticator`` / ``auth.Authorizer``).
A token is never logged: the client reads answers without logging them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from vkcmd.kube.client import KubeClient

log = logging.getLogger("vkcmd.kube.reviews")

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


class TokenReviewer:
    """``reviewer(token)`` -> the authenticated user ({username, uid, groups, extra}) or None."""

    def __init__(self, client: KubeClient, *, audiences: Sequence[str] = (), timeout: float = 10.0) -> None:
        self._client = client
        self._audiences = list(audiences)
        self._timeout = timeout

    def __call__(self, token: str) -> Mapping[str, Any] | None:
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = self._audiences
        answer = self._client.request("POST", TOKEN_REVIEWS, timeout=self._timeout, body={
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec})
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            if status.get("error"):
                log.debug("token not authenticated: %s", status["error"])
            return None
        return status.get("user") or None


class AccessReviewer:
    """``reviewer(spec)`` -> (allowed, reason) from a SubjectAccessReview with that ``spec``."""

    def __init__(self, client: KubeClient, *, timeout: float = 10.0) -> None:
        self._client = client
        self._timeout = timeout

    def __call__(self, spec: Mapping[str, Any]) -> tuple[bool, str]:
        answer = self._client.request("POST", SUBJECT_ACCESS_REVIEWS, timeout=self._timeout, body={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": dict(spec)})
        status = answer.get("status") or {}
        allowed = bool(status.get("allowed")) and not status.get("denied")
        return allowed, str(status.get("reason") or status.get("evaluationError") or "")
