"""The controllers' one door to the API: raw-JSON requests and watches over the `kubernetes` client.

Owns every use of the `kubernetes` client by the controllers: an `ApiClient`
built from a kubeconfig (`kubernetes.config.new_client_from_config`), used
for its TLS and credentials only, with plain JSON in and out (no model
deserialization).  Client failures are turned into `KubeError` here.
Knows nothing of what the controllers decide (informers are `informers.py`,
worker threads `base.py`).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import urllib3
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException


MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeError(Exception):
    """A failed API call: HTTP status (0 when the server was not reached), reason, message."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (with or without fraction)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def obj_key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta.get('name', '')}" if ns else meta.get("name", "")


class Kube:
    """Raw JSON calls over one `ApiClient` (thread-safe: urllib3 pools connections)."""

    def __init__(self, kubeconfig_path: str, *, timeout: float = 15.0):
        self.kubeconfig_path = kubeconfig_path
        self.api = kube_config.new_client_from_config(config_file=kubeconfig_path)
        self.timeout = timeout

    def close(self) -> None:
        self.api.close()

    def _send(self, method: str, path: str, query: dict | None, body: Any,
              content_type: str | None, timeout: Any):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        request = self.api.param_serialize(
            method, path, query_params=list((query or {}).items()) or None,
            header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            return self.api.call_api(*request, _request_timeout=timeout)
        except ApiException as exc:
            raise KubeError(exc.status or 0, exc.reason or "", str(exc.body or exc)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(0, "Unreachable", str(exc)) from None

    def request(self, method: str, path: str, *, query: dict | None = None, body: Any = None,
                content_type: str | None = None) -> dict:
        """One call; returns the decoded JSON body or raises `KubeError`."""
        response = self._send(method, path, query, body, content_type, self.timeout)
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(0, "Unreachable", str(exc)) from None
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"message": data[:200].decode(errors="replace")}
        if not 200 <= response.status <= 299:
            raise KubeError(response.status, decoded.get("reason", ""), decoded.get("message", ""))
        return decoded

    def get(self, path: str, **query: Any) -> dict:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> dict:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def delete(self, path: str, **options: Any) -> dict:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", **options} if options else None
        return self.request("DELETE", path, body=body)

    def open_watch(self, path: str, query: dict, timeout: float):
        """Start a watch; returns the streaming urllib3 response."""
        response = self._send("GET", path, query, None, None, (self.timeout, timeout))
        if not 200 <= response.status <= 299:
            data = response.read()
            try:
                decoded = json.loads(data)
            except ValueError:
                decoded = {}
            raise KubeError(response.status, decoded.get("reason", ""), decoded.get("message", ""))
        return response.response
