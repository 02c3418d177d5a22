"""Service account tokens for this node's pods, from TokenRequest, fetched in the background.

Each token is bound to its pod (``boundObjectRef`` kind Pod, name, uid) with the
audience and expiry its projected source asks for, as the kubelet requests them
(and as NodeRestriction demands), and is fetched again once 80 % of its life has
passed. Staging never waits for the API: a token not fetched yet is "not yet",
and ``on_change("ServiceAccountToken", namespace, account)`` retries the pods
when it comes; a renewal reports ``("ServiceAccountTokenRenewed", namespace, pod)``
so that the pod's running containers get the new file. Tokens are never logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vkcmd.backoff import PerKey
from vkcmd.kube.client import ApiError, KubeClient, path
from vkcmd.pods.errors import not_yet
from vkcmd.pods.volumes import SERVICE_ACCOUNT_TOKEN, SERVICE_ACCOUNT_TOKEN_RENEWED
from vkcmd.timefmt import parse_time
from vkcmd.workqueue import WorkQueue

log = logging.getLogger("vkcmd.kube.tokens")

TOKEN = SERVICE_ACCOUNT_TOKEN  # the kind on_change reports for a token's first fetch (and the queue key)
DEFAULT_EXPIRATION = 3607  # the kubelet's default for the projected token of the service account volume
REFRESH_AT = 0.8  # of a token's life


class TokenError(RuntimeError):
    """A service account token could not be obtained (the message carries no credential)."""


@dataclass
class _Token:
    token: str = ""
    issued: float = 0.0
    expires: float = 0.0
    error: str = ""


class TokenCache:
    """Tokens by (namespace, account, audiences, expiry, pod); fetched by the workers of ``queue``."""

    def __init__(self, client: KubeClient, queue: WorkQueue, *, on_change: Callable[[str, str, str], None],
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._queue = queue
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[tuple, _Token] = {}
        self._by_pod: dict[str, set[tuple]] = {}  # pod uid -> its keys (forget_pod is O(its tokens), not O(all))
        self._failures = PerKey(1.0, 60.0)
        self.requests = 0

    def token(self, namespace: str, account: str, audiences: list[str] | None, expiration: int | None,
              pod: dict[str, Any] | None) -> str:
        meta = (pod or {}).get("metadata") or {}
        key = (TOKEN, namespace, account, tuple(audiences or ()), int(expiration or DEFAULT_EXPIRATION),
               meta.get("uid", ""), meta.get("name", ""))
        now = self._clock()
        with self._lock:
            entry = self._tokens.get(key)
            if entry is None:
                self._tokens[key] = _Token()
                if key[5]:
                    self._by_pod.setdefault(key[5], set()).add(key)
            token = entry.token if entry and now < entry.expires else ""
            error = entry.error if entry else ""
            due = entry is None or (token and now >= entry.issued + REFRESH_AT * (entry.expires - entry.issued))
        if due:
            self._queue.add(key)  # (at 80 % of its life the old token is served while a new one comes)
        if token:
            return token
        if error:
            raise TokenError(error)
        raise not_yet(f"waiting for a token for service account {namespace}/{account}")

    def forget_pod(self, uid: str) -> None:
        """Drop the tokens bound to a pod that is gone (a refresh still queued finds nothing)."""
        if not uid:
            return
        with self._lock:
            for key in self._by_pod.pop(uid, ()):
                self._tokens.pop(key, None)

    def fetch(self, key: tuple) -> None:
        """On a worker: request the token, store it, schedule its refresh at 80 % of its life."""
        _, namespace, account, audiences, expiration, uid, name = key
        with self._lock:
            if key not in self._tokens:
                return
        spec: dict[str, Any] = {"audiences": list(audiences), "expirationSeconds": expiration}
        if uid:
            spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        now = self._clock()
        self.requests += 1
        try:
            answer = self._client.create(path(resource="serviceaccounts", namespace=namespace, name=account,
                                              subresource="token"), body)
            status = answer.get("status") or {}
            token = status.get("token")
            if not token:
                raise ApiError(500, "NoToken", "the API returned no token")
        except ApiError as error:
            failures, wait = self._failures.failed(str(key))
            message = f"failed to fetch token for service account {namespace}/{account}: {error.message}"
            with self._lock:
                entry = self._tokens.get(key)
                if entry is None:
                    return
                first = not entry.error and not entry.token
                entry.error = message if now >= entry.expires else ""  # a valid old token is still served
            if failures == 1:
                log.warning("%s; retrying in %.0fs", message, wait)
            self._queue.add_after(key, wait)
            if first:
                self._on_change(TOKEN, namespace, account)  # the waiting pod shows the reason
            return
        self._failures.succeeded(str(key))
        expires = now + _lifetime(status.get("expirationTimestamp"), expiration)
        with self._lock:
            entry = self._tokens.get(key)
            if entry is None:
                return
            renewed = bool(entry.token)
            entry.token, entry.issued, entry.expires, entry.error = token, now, expires, ""
        self._queue.add_after(key, max(1.0, REFRESH_AT * (expires - now)))
        if renewed:  # the pod's running containers get the new token file
            self._on_change(SERVICE_ACCOUNT_TOKEN_RENEWED, namespace, name)
        else:
            self._on_change(TOKEN, namespace, account)


def _lifetime(stamp: str | None, asked: int) -> float:
    """Seconds the token lives: as asked, or less when the API server says so (measured against the
    real clock, so that a node's skewed clock does not matter)."""
    try:
        granted = parse_time(stamp) - time.time() if stamp else asked
    except ValueError:
        granted = asked
    return max(1.0, min(float(asked), granted))
