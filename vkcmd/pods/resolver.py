"""Where staging gets what a pod spec refers to: ConfigMaps, Secrets, tokens and node facts.

:class:`Resolver` is the boundary; the Kubernetes side implements it with
watch-backed caches and the TokenRequest API. :class:`StaticResolver` holds
objects in memory, for tests and the demo.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Resolver(Protocol):
    """What staging needs from the cluster. Objects are plain JSON dicts as the API returns them.

    Each method may be called from several stager threads at once and must not
    block on the network: what is not at hand yet is asked for in the background
    and the method raises :func:`vkcmd.pods.errors.not_yet` (the container waits
    and is retried when the resolver reports the object changed).
    """

    def config_map(self, namespace: str, name: str) -> dict | None:
        """The ConfigMap (``data``; ``binaryData`` base64-encoded), or None when it does not exist."""

    def secret(self, namespace: str, name: str) -> dict | None:
        """The Secret (``data`` base64-encoded, as from the API), or None when it does not exist."""

    def service_account_token(self, namespace: str, service_account: str, audiences: list[str],
                              expiration_seconds: int, pod: dict) -> str:
        """A token for the service account, bound to ``pod``; raises when none can be had.

        ``audiences`` is empty for the API server's own audience. Called at each
        staging of each container that mounts one: implementations should cache
        a token until most of its lifetime has passed, as the kubelet does. The
        exception's message is shown to users and must not contain a credential.
        """

    def node_facts(self) -> dict:
        """Facts of this node for the downward API.

        Keys: ``nodeName``; ``hostIP``; ``podIP`` and ``podIPs`` (list; both
        default to ``hostIP``); ``allocatable``: quantities of ``cpu``,
        ``memory`` and optionally ``ephemeral-storage``, used for
        ``resourceFieldRef`` limits a container does not set (as the kubelet does).
        """


DEFAULT_NODE_FACTS = {
    "nodeName": "vkcmd-node",
    "hostIP": "127.0.0.1",
    "podIP": "127.0.0.1",
    "podIPs": ["127.0.0.1"],
    "allocatable": {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi"},
}


def fold_string_data(secret: dict) -> dict:
    """A copy of a Secret as the API server stores it: ``stringData`` merged into ``data`` (base64)."""
    folded = copy.deepcopy(secret)
    string_data = folded.pop("stringData", None) or {}
    data = dict(folded.get("data") or {})
    for key, value in string_data.items():
        data[key] = base64.b64encode(value.encode()).decode()
    folded["data"] = data
    return folded


class StaticResolver:
    """An in-memory :class:`Resolver` for tests and the demo.

    ``objects`` are ConfigMap and Secret dicts (``kind`` decides which; a
    missing namespace means ``default_namespace``). Secrets are stored as the
    API server stores them (``stringData`` folded into ``data``). ``token`` is
    a callable ``(namespace, service_account, audiences, expiration_seconds,
    pod) -> str`` or a fixed string; every token request is recorded in
    ``token_requests``.
    """

    def __init__(self, objects: Iterable[dict] = (), *, node_facts: dict | None = None,
                 token: str | Callable[..., str] | None = None, default_namespace: str = "default") -> None:
        self.default_namespace = default_namespace
        self._objects: dict[tuple[str, str, str], dict] = {}
        self._node_facts = copy.deepcopy(node_facts if node_facts is not None else DEFAULT_NODE_FACTS)
        self._token = token
        self.token_requests: list[dict[str, Any]] = []
        for obj in objects:
            self.add(obj)

    def add(self, obj: dict) -> None:
        """Add or replace a ConfigMap or Secret."""
        kind = obj.get("kind")
        if kind not in ("ConfigMap", "Secret"):
            raise ValueError(f"StaticResolver holds ConfigMaps and Secrets, not {kind!r}")
        stored = fold_string_data(obj) if kind == "Secret" else copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        meta.setdefault("namespace", self.default_namespace)
        self._objects[(kind, meta["namespace"], meta["name"])] = stored

    def remove(self, kind: str, namespace: str, name: str) -> None:
        self._objects.pop((kind, namespace, name), None)

    def config_map(self, namespace: str, name: str) -> dict | None:
        found = self._objects.get(("ConfigMap", namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def secret(self, namespace: str, name: str) -> dict | None:
        found = self._objects.get(("Secret", namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def service_account_token(self, namespace: str, service_account: str, audiences: list[str],
                              expiration_seconds: int, pod: dict) -> str:
        self.token_requests.append({"namespace": namespace, "serviceAccount": service_account,
                                    "audiences": list(audiences), "expirationSeconds": expiration_seconds,
                                    "pod": (pod.get("metadata") or {}).get("name")})
        if callable(self._token):
            return self._token(namespace, service_account, audiences, expiration_seconds, pod)
        if self._token is not None:
            return self._token
        return f"static-token.{namespace}.{service_account}"

    def node_facts(self) -> dict:
        return copy.deepcopy(self._node_facts)
