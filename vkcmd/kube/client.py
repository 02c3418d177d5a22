"""The one edge to the Kubernetes API: raw JSON requests and watch streams on urllib3.

Where the cluster is and who we are come from :mod:`vkcmd.kube.kubeconfig`
(kubeconfig or in-cluster; tokens and exec credentials kept fresh by
:mod:`vkcmd.kube.credentials`); this module owns the connection pool and the
requests. Objects stay plain dicts, several times cheaper than generated
models (and the ``kubernetes`` package is not imported: ~19 MiB of RSS). API
failures become :class:`ApiError` here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

from vkcmd import __version__, certfacts
from vkcmd.kube import kubeconfig
from vkcmd.kube.credentials import CredentialError
from vkcmd.kube.kubeconfig import ClusterAccess, KubeconfigError

log = logging.getLogger("vkcmd.kube.client")

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

USER_AGENT = f"vkcmd/{__version__} (linux)"
__all__ = ["ApiError", "KubeClient", "KubeconfigError", "WatchStream", "path"]

RequestObserver = Callable[[str, int, float], None]  # verb, HTTP status (0 = no answer), seconds


class ApiError(Exception):
    """The API answered with an error status, or could not be reached (status 0)."""

    def __init__(self, status: int, reason: str, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else f"API unreachable: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = dict(body or {})

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def retryable(self) -> bool:
        """Worth trying again later: unreachable, throttled, or a server-side failure."""
        return self.status == 0 or self.status == 429 or self.status >= 500


def path(*, group: str = "", version: str = "v1", resource: str, namespace: str | None = None,
         name: str | None = None, subresource: str | None = None) -> str:
    """The REST path of a collection or an object."""
    parts = ["/api/v1" if not group else f"/apis/{group}/{version}"]
    if namespace is not None:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(resource)
    if name is not None:
        parts.append(quote(name, safe=""))
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


class KubeClient:
    """Thread-safe raw-JSON access to one cluster."""

    def __init__(self, access: ClusterAccess, *, observer: RequestObserver | None = None, timeout: float = 30.0,
                 pool_size: int = 32) -> None:
        self._access = access
        self._observer = observer
        self._timeout = timeout
        self._pool_size = pool_size
        self._lock = threading.Lock()
        self._retired: list[tuple[ClusterAccess, urllib3.PoolManager]] = []
        self._pair = _client_pair(access)
        self._pool = self._new_pool(access, self._pair)

    @classmethod
    def from_kubeconfig(cls, kubeconfig_path: str | None, *, observer: RequestObserver | None = None,
                        pool_size: int = 32) -> KubeClient:
        """A client for ``kubeconfig_path``, or the in-cluster service account when it is None.

        Raises :class:`KubeconfigError` (one line, no secret) when it cannot be used."""
        access = kubeconfig.in_cluster() if kubeconfig_path is None else kubeconfig.load(kubeconfig_path)
        return cls(access, observer=observer, pool_size=pool_size)

    @property
    def server(self) -> str:
        return self._access.server

    @property
    def ca_file(self) -> str | None:
        """A path to the cluster's CA (the kubeconfig's file, or an in-memory copy), or None."""
        return self._access.ca_file()

    def _new_pool(self, access: ClusterAccess, pair: tuple[bytes, bytes | None] | None) -> urllib3.PoolManager:
        # At most one quick retry of a connection that could not be made (a pooled keep-alive one the
        # server dropped): callers retry with their own back-off, and urllib3's default retries would
        # triple every failure (and its log lines) while the API is down.
        retries = urllib3.util.Retry(total=1, connect=1, read=0, redirect=0, status=0,
                                     raise_on_redirect=False, raise_on_status=False)
        options: dict[str, Any] = {"maxsize": self._pool_size, "retries": retries}
        if access.server.startswith("https"):
            options.update(ssl_context=access.ssl_context(pair),
                           cert_reqs=ssl.CERT_REQUIRED if access.verify else ssl.CERT_NONE)
            if access.tls_server_name:
                options["server_hostname"] = access.tls_server_name
            if not access.verify:
                options["assert_hostname"] = False
        if access.proxy:
            return urllib3.ProxyManager(access.proxy, **options)
        return urllib3.PoolManager(**options)

    def _current(self) -> tuple[ClusterAccess, urllib3.PoolManager]:
        """The access and its pool; a new pool when an exec plugin issued a new client certificate."""
        access, pool = self._access, self._pool
        pair = _client_pair(access)
        if pair is not self._pair:
            with self._lock:
                if pair is not self._pair and access is self._access:
                    self._retired.append((access, self._pool))
                    self._pool, self._pair = self._new_pool(access, pair), pair
                pool = self._pool
        return access, pool

    def reload(self, kubeconfig_path: str) -> None:
        """Use the credentials ``kubeconfig_path`` names now (a renewed certificate), without a restart.

        Requests from now on use new connections; those in flight (watches)
        finish on the old ones, closed at :meth:`close`.
        """
        access = kubeconfig.load(kubeconfig_path)
        pair = _client_pair(access)
        pool = self._new_pool(access, pair)
        with self._lock:
            self._retired.append((self._access, self._pool))
            self._access, self._pool, self._pair = access, pool, pair

    def close(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for access, pool in [*retired, (self._access, self._pool)]:
            pool.clear()
            access.close()

    def certificate_identity(self) -> tuple[str, list[str]] | None:
        """(user, groups) of the client certificate — its CN and Os — or None when it has none."""
        pair = self._current()[0].client_pair()
        if not pair:
            return None
        try:  # (read without cryptography: a node that only checks its certificate need not load it)
            found = certfacts.facts(pair[0])
        except ValueError:
            return None
        return (found.common_names[0] if found.common_names else "", list(found.organizations))

    # --- plain requests -----------------------------------------------------------

    def request(self, method: str, resource_path: str, *, query: Mapping[str, Any] | None = None,
                body: Any = None, content_type: str = "application/json",
                timeout: float | None = None) -> dict[str, Any]:
        """Send one request and return the decoded JSON answer; raise ApiError on failure."""
        response = self._send(method, resource_path, query, body, content_type, timeout or self._timeout)
        try:
            data = response.read()
        finally:
            response.release_conn()
        return json.loads(data) if data else {}

    def get(self, resource_path: str, **query: Any) -> dict[str, Any]:
        return self.request("GET", resource_path, query=query)

    def create(self, resource_path: str, body: Mapping[str, Any], **query: Any) -> dict[str, Any]:
        return self.request("POST", resource_path, query=query, body=body)

    def replace(self, resource_path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("PUT", resource_path, body=body)

    def patch(self, resource_path: str, body: Any, content_type: str = STRATEGIC_MERGE_PATCH) -> dict[str, Any]:
        return self.request("PATCH", resource_path, body=body, content_type=content_type)

    def delete(self, resource_path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.request("DELETE", resource_path, body=body)

    # --- watch ----------------------------------------------------------------------

    def watch(self, resource_path: str, *, resource_version: str, timeout_seconds: int = 300,
              **query: Any) -> WatchStream:
        """Open a watch; iterate the result for events ({"type", "object"}).

        The caller decides what to do on ERROR events (410 Gone means re-list).
        ``close()`` on the stream may be called from another thread to end it.
        """
        params = {**query, "watch": "true", "resourceVersion": resource_version,
                  "timeoutSeconds": timeout_seconds, "allowWatchBookmarks": "true"}
        response = self._send("GET", resource_path, params, None, "application/json",
                              (10.0, timeout_seconds + 30.0), watch=True)
        return WatchStream(response, resource_path)

    # --- the edge -------------------------------------------------------------------

    def _send(self, method: str, resource_path: str, query: Mapping[str, Any] | None, body: Any,
              content_type: str, timeout: Any, watch: bool = False) -> urllib3.BaseHTTPResponse:
        """One request on the pool: the body encoded once, compact (objects here are plain JSON already).
        The credentials are asked for on every call, so a refreshed token is used."""
        access, pool = self._current()
        query_pairs = [(key, _query_value(value)) for key, value in (query or {}).items() if value is not None]
        url = access.server + resource_path
        if query_pairs:
            url += "?" + urlencode(query_pairs)
        headers = {"Accept": "application/json", "Content-Type": content_type, "User-Agent": USER_AGENT}
        try:
            authorization = access.credentials.authorization()
        except CredentialError as error:  # an exec plugin that fails now: no request can be made
            raise ApiError(0, "NoCredentials", str(error)) from None
        if authorization:
            headers["Authorization"] = authorization
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        if isinstance(timeout, tuple):
            timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        else:
            timeout = urllib3.Timeout(total=timeout)
        verb = _verb(method, watch)
        started = time.monotonic()
        try:
            response = pool.urlopen(method, url, body=data, headers=headers, timeout=timeout,
                                    preload_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            self._observe(verb, 0, started)
            raise ApiError(0, "Unreachable", str(error)) from None
        self._observe(verb, response.status, started)
        if response.status >= 400:
            if response.status == 401:  # a token the server no longer takes: fetch a new one next time
                access.credentials.expire()
            try:
                data = response.read()
            finally:
                response.release_conn()
            raise _api_error(response.status, data)
        return response

    def _observe(self, verb: str, status: int, started: float) -> None:
        if self._observer is not None:
            self._observer(verb, status, time.monotonic() - started)


class WatchStream:
    """The events of one watch connection; iterate once, close from any thread."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, label: str) -> None:
        self._raw = raw
        self._label = label
        self._closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        pending = b""
        try:
            for chunk in self._raw.stream(65536, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            if pending.strip():
                yield json.loads(pending)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
            if not self._closed:
                log.debug("watch %s ended: %s", self._label, error)
        finally:
            if not self._closed:
                self._closed = True
                self._raw.release_conn()  # the stream ended on its own: the connection may be reused

    def close(self) -> None:
        """End the stream now; safe from another thread while one is iterating."""
        if self._closed:
            return
        self._closed = True
        try:
            self._raw.shutdown()  # unblocks a reader blocked in another thread
        except Exception:  # not connected any more
            pass
        self._raw.close()


def _client_pair(access: ClusterAccess) -> tuple[bytes, bytes | None] | None:
    """The client certificate to present to ``access``'s server: none over plain HTTP."""
    return access.client_pair() if access.server.startswith("https") else None


def _verb(method: str, watch: bool) -> str:
    if watch:
        return "WATCH"
    return method.upper()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _api_error(status: int, data: bytes) -> ApiError:
    try:
        body = json.loads(data)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    text = data.decode("utf-8", "replace")[:500] if data else ""
    return ApiError(status, body.get("reason") or "Error", body.get("message") or text, body)
