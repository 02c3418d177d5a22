"""What pods reference, read from watch-backed caches: ConfigMaps, Secrets, tokens.

Implements the staging resolver over two informers (no GET per pod) and the
TokenRequest API (tokens cached until most of their life has passed). When a
watched object changes, ``on_change(kind, namespace, name)`` lets the pod side
retry the pods that were waiting for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from vkcmd.kube.client import ApiError, KubeClient, path
from vkcmd.kube.informer import SYNCED, Informer

log = logging.getLogger("vkcmd.kube.objects")

ChangeHandler = Callable[[str, str, str], None]  # kind, namespace, name


class TokenError(RuntimeError):
    """A service account token could not be obtained."""


class ClusterObjects:
    """ConfigMaps and Secrets of every namespace, plus service account tokens."""

    def __init__(self, client: KubeClient, *, on_change: ChangeHandler | None = None,
                 node_facts: Callable[[], dict[str, Any]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._on_change = on_change or (lambda kind, namespace, name: None)
        self._node_facts = node_facts or dict
        self._clock = clock
        self.config_maps = Informer(client, path(resource="configmaps"), name="configmaps",
                                    handler=self._handler("ConfigMap"))
        self.secrets = Informer(client, path(resource="secrets"), name="secrets",
                                handler=self._handler("Secret"))
        self._tokens: dict[tuple, tuple[str, float, float]] = {}  # key -> (token, issued, expires)
        self._tokens_lock = threading.Lock()

    def start(self) -> None:
        self.config_maps.start()
        self.secrets.start()

    def stop(self) -> None:
        self.config_maps.stop()
        self.secrets.stop()

    def wait_synced(self, timeout: float) -> bool:
        return self.config_maps.wait_synced(timeout) and self.secrets.wait_synced(timeout)

    def _handler(self, kind: str):
        def handle(event: str, old: dict | None, new: dict | None) -> None:
            if event == SYNCED:
                self._on_change(kind, "", "")
                return
            meta = (new or old or {}).get("metadata") or {}
            self._on_change(kind, meta.get("namespace", ""), meta.get("name", ""))

        return handle

    # --- the staging resolver -----------------------------------------------------------

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.config_maps.wait_synced(10)
        return self.config_maps.get(f"{namespace}/{name}")

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.secrets.wait_synced(10)
        return self.secrets.get(f"{namespace}/{name}")

    def node_facts(self) -> dict[str, Any]:
        return self._node_facts()

    def service_account_token(self, namespace: str, service_account: str, audiences: list[str] | None,
                              expiration_seconds: int | None, pod: dict[str, Any] | None) -> str:
        """A bound token from TokenRequest, reused until 80 % of its life has passed."""
        meta = (pod or {}).get("metadata") or {}
        key = (namespace, service_account, tuple(audiences or ()), expiration_seconds, meta.get("uid"))
        now = self._clock()
        with self._tokens_lock:
            cached = self._tokens.get(key)
        if cached and now < cached[1] + 0.8 * (cached[2] - cached[1]):
            return cached[0]
        spec: dict[str, Any] = {"audiences": list(audiences or []),
                                "expirationSeconds": int(expiration_seconds or 3607)}
        if meta.get("uid"):
            spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": meta.get("name"),
                                      "uid": meta.get("uid")}
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            answer = self._client.create(path(resource="serviceaccounts", namespace=namespace,
                                              name=service_account, subresource="token"), body)
        except ApiError as error:
            raise TokenError(f"failed to fetch token for service account {namespace}/{service_account}: "
                             f"{error.message}") from None
        token = (answer.get("status") or {}).get("token")
        if not token:
            raise TokenError(f"no token returned for service account {namespace}/{service_account}")
        expires = now + spec["expirationSeconds"]
        with self._tokens_lock:
            self._tokens[key] = (token, now, expires)
        return token

    def forget_pod(self, uid: str) -> None:
        """Drop the cached tokens bound to a pod that is gone."""
        with self._tokens_lock:
            for key in [k for k in self._tokens if k[4] == uid]:
                del self._tokens[key]
