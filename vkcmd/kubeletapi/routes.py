"""The kubelet API's routes: authenticate, authorize, route a parsed request, map errors to statuses.

Thin handlers over the :class:`~.backend.Backend` and the pure modules
(``summary``, ``resource_metrics``, ``logquery``); the wire (TLS, budgets,
chunking, upgrades) is ``transport``'s. Every path but ``/healthz`` needs an
authenticated and authorized caller.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlsplit

from vkcmd.kubeletapi import portforward, resource_metrics, streams, summary
from vkcmd.kubeletapi.backend import ApiError, BadRequest, MethodNotAllowed, NotFound
from vkcmd.kubeletapi.logquery import parse_log_options
from vkcmd.kubeletapi.metrics import exposition
from vkcmd.kubeletapi.transport import TEXT as _TEXT
from vkcmd.kubeletapi.transport import Handler

log = logging.getLogger("vkcmd.kubeletapi")

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_JSON = "application/json"


def _status_of(error: BaseException) -> int:
    """The one place an error becomes an HTTP status."""
    return error.status if isinstance(error, ApiError) else 500


def endpoint_of(path: str) -> str:
    """The bounded label a path is counted under in ``vkcmd_kubelet_api_requests``."""
    for name in ("/healthz", "/pods", "/containerLogs", "/stats/summary", "/metrics/resource", "/metrics", "/exec",
                 "/attach", "/portForward"):
        if path == name or path.startswith(name + "/"):
            return name.lstrip("/")
    return "other"


def check_name(kind: str, value: str, subdomain: bool = False) -> str:
    pattern, limit = (_DNS1123_SUBDOMAIN, 253) if subdomain else (_DNS1123_LABEL, 63)
    if not value or len(value) > limit or not pattern.match(value):
        what = "a DNS-1123 subdomain" if subdomain else "a DNS-1123 label"
        raise BadRequest(f"invalid {kind} {value!r}: must be {what}")
    return value


def error_reply(handler: Handler, status: int, message: str) -> int:
    headers = {"Allow": "GET"} if status == 405 else None
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="kubelet"'}
    return handler.send(status, message.encode(), _TEXT, headers)


#: What ``anonymous_metrics`` opens to callers without credentials: read-only metrics, never logs or exec.
ANONYMOUS_PATHS = frozenset({"/metrics/resource", "/metrics", "/stats/summary"})


def _anonymous_allowed(handler: Handler, path: str) -> bool:
    return (handler.server.owner.anonymous_metrics and handler.command in ("GET", "HEAD")
            and path.rstrip("/") in ANONYMOUS_PATHS and not handler.connection.getpeercert()
            and handler.headers.get("Authorization") is None)


def handle(handler: Handler) -> None:
    """Serve one parsed request: authenticate and authorize (not /healthz), route, count."""
    owner = handler.server.owner
    started = time.monotonic()
    url = urlsplit(handler.path)
    path = url.path
    status = 500
    try:
        if not (path == "/healthz" or path.startswith("/healthz/") or _anonymous_allowed(handler, path)):
            user = owner.authenticator.authenticate(handler.connection.getpeercert(),
                                                    handler.headers.get("Authorization"))
            handler.authenticated()
            owner.authorizer.authorize(user, handler.command, path)
        route, methods = route_of(path)
        if handler.command not in methods:
            raise MethodNotAllowed(f"method {handler.command} is not allowed on {path}")
        status = route(handler, path, url.query)
    except ApiError as error:
        status = error_reply(handler, _status_of(error), error.message)
    except (ConnectionError, TimeoutError, ssl.SSLError) as error:
        handler.close_connection = True
        status = 499
        log.debug("kubelet API client left during %s: %s", path, error)
    except Exception:
        log.exception("kubelet API request failed", extra={"fields": {"path": path}})
        status = error_reply(handler, 500, "Internal Server Error")
    finally:
        if owner.metrics is not None:
            owner.metrics.kubelet_request(endpoint_of(path), status)
        log.debug("kubelet API %s %s -> %d in %.1f ms", handler.command, path, status,
                  (time.monotonic() - started) * 1000)


# --- routes: (handler, path, query) -> status -------------------------------------------------

def _healthz(handler: Handler, path: str, query: str) -> int:
    if path != "/healthz":
        raise NotFound("404 page not found")
    return handler.send(200, b"ok", _TEXT)


def _pods(handler: Handler, path: str, query: str) -> int:
    if path not in ("/pods", "/pods/"):
        raise NotFound("404 page not found")
    items = list(handler.server.owner.backend.list_pods())
    body = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}, separators=(",", ":"))
    return handler.send(200, body.encode(), _JSON)


def _container_logs(handler: Handler, path: str, query: str) -> int:
    parts = [unquote(p) for p in path.split("/")[2:]]
    if parts and parts[-1] == "":
        parts.pop()
    if len(parts) != 3:
        missing = ["podNamespace", "podID", "container name"][len(parts)] if len(parts) < 3 else None
        if missing:
            raise BadRequest(f"Missing {missing}.")
        raise NotFound("404 page not found")
    namespace = check_name("namespace", parts[0])
    pod = check_name("pod name", parts[1], subdomain=True)
    container = check_name("container name", parts[2])
    owner = handler.server.owner
    options = parse_log_options(parse_qs(query, keep_blank_values=True), owner.clock_ns())
    stop = threading.Event()
    owner.register_stream(stop)
    try:
        chunks = owner.backend.open_container_log(namespace, pod, container, options, stop)
        return handler.stream(iter(chunks), stop, watch=options.follow)
    finally:
        owner.unregister_stream(stop)


def _stats_summary(handler: Handler, path: str, query: str) -> int:
    if path not in ("/stats/summary", "/stats/summary/"):
        raise NotFound("404 page not found")
    stats = handler.server.owner.stats
    body = stats.render("summary", summary.encode)
    return handler.send(200, body, _JSON)


def _metrics_resource(handler: Handler, path: str, query: str) -> int:
    try:
        body = handler.server.owner.stats.render("resource", lambda s: resource_metrics.render(s).encode())
    except Exception:
        log.exception("measuring usage for /metrics/resource failed")
        body = resource_metrics.render_error().encode()
    return handler.send(200, body, resource_metrics.CONTENT_TYPE)


def _metrics(handler: Handler, path: str, query: str) -> int:
    registry = handler.server.owner.registry
    if registry is None:
        raise NotFound("404 page not found")
    body, content_type = exposition(registry)
    return handler.send(200, body, content_type)


Route = Callable[[Handler, str, str], int]
_GET = frozenset({"GET"})
_ROUTES: tuple[tuple[str, Route, frozenset[str]], ...] = (
    ("/healthz", _healthz, _GET),
    ("/pods", _pods, _GET),
    ("/containerLogs", _container_logs, _GET),
    ("/stats/summary", _stats_summary, _GET),
    ("/metrics/resource", _metrics_resource, _GET),
    ("/exec", streams.exec_route, frozenset({"GET", "POST"})),
    ("/attach", streams.attach_route, frozenset({"GET", "POST"})),
    ("/portForward", portforward.port_forward_route, frozenset({"GET", "POST"})),
)


def route_of(path: str) -> tuple[Route, frozenset[str]]:
    """The handler of ``path`` and the methods it takes; NotFound when none serves it."""
    for prefix, route, methods in _ROUTES:
        if path == prefix or path.startswith(prefix + "/"):
            return route, methods
    if path in ("/metrics", "/metrics/"):
        return _metrics, _GET
    raise NotFound("404 page not found")
