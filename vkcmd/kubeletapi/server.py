"""The HTTPS server of the kubelet API: connections, TLS, routing, and thin handlers.

One accept thread; each connection gets a named daemon thread (at most
``max_connections`` at once — more are closed at accept) that does the TLS
handshake itself, so a slow client never holds up the others, then serves
HTTP/1.1 keep-alive requests until the client leaves or stays idle for
``idle_timeout``. Every request is authenticated and authorized (``auth``)
except ``/healthz``, then routed; typed errors become status codes in one place
(:func:`_status_of`). What is served comes from the :class:`~.backend.Backend`.
"""

from __future__ import annotations

import http.server
import itertools
import json
import logging
import re
import select
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from prometheus_client import CollectorRegistry

from vkcmd import __version__
from vkcmd.kubeletapi import resource_metrics, summary
from vkcmd.kubeletapi.auth import Authenticator, Authorizer
from vkcmd.kubeletapi.backend import ApiError, Backend, BadRequest, MethodNotAllowed, NotFound
from vkcmd.kubeletapi.logquery import parse_log_options
from vkcmd.kubeletapi.metrics import Metrics, exposition

log = logging.getLogger("vkcmd.kubeletapi")

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


def _status_of(error: BaseException) -> int:
    """The one place an error becomes an HTTP status."""
    return error.status if isinstance(error, ApiError) else 500


def endpoint_of(path: str) -> str:
    """The bounded label a path is counted under in ``vkcmd_kubelet_api_requests``."""
    for name in ("/healthz", "/pods", "/containerLogs", "/stats/summary", "/metrics/resource", "/metrics"):
        if path == name or path.startswith(name + "/"):
            return name.lstrip("/")
    return "other"


def _check_name(kind: str, value: str, subdomain: bool = False) -> str:
    pattern, limit = (_DNS1123_SUBDOMAIN, 253) if subdomain else (_DNS1123_LABEL, 63)
    if not value or len(value) > limit or not pattern.match(value):
        what = "a DNS-1123 subdomain" if subdomain else "a DNS-1123 label"
        raise BadRequest(f"invalid {kind} {value!r}: must be {what}")
    return value


class _ClientWatch:
    """One thread noticing when the client of a followed log stream goes away.

    The client sends nothing while it reads a stream, so its socket turning
    readable (FIN, reset, TLS close) means it left: the stream's stop event is
    set. Only ``poll`` is used here; the handler thread alone reads and writes.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._watched: dict[socket.socket, threading.Event] = {}
        self._changed = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubeletapi-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, sock: socket.socket, stop: threading.Event) -> None:
        with self._lock:
            self._watched[sock] = stop
        self._changed.set()

    def remove(self, sock: socket.socket) -> None:
        with self._lock:
            self._watched.pop(sock, None)

    def stop_all(self) -> None:
        with self._lock:
            for stop in self._watched.values():
                stop.set()

    def close(self) -> None:
        self.stop_all()
        self._closed.set()
        self._changed.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def _run(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                watched = {sock.fileno(): stop for sock, stop in self._watched.items() if sock.fileno() >= 0}
            if not watched:
                self._changed.wait(self._interval * 4)
                self._changed.clear()
                continue
            poller = select.poll()  # not select(): vkcmd's descriptors may number above FD_SETSIZE
            for fd in watched:
                poller.register(fd, select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR)
            try:
                events = poller.poll(self._interval * 1000)
            except OSError:  # interrupted: look again next round
                continue
            for fd, _event in events:
                watched[fd].set()


class _TLSServer(http.server.ThreadingHTTPServer):
    """Accepts plain TCP; every connection thread does its own TLS handshake."""

    allow_reuse_address = True
    request_queue_size = 128
    daemon_threads = True
    block_on_close = False  # KubeletServer.stop joins the connection threads itself

    def __init__(self, owner: KubeletServer, address: tuple[str, int]) -> None:
        self.owner = owner
        self._slots = threading.BoundedSemaphore(owner.max_connections)
        self._lock = threading.Lock()
        self.connections: dict[int, tuple[socket.socket, threading.Thread]] = {}
        self.rejected = 0
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: it resolves the host name (slow, useless)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.rejected += 1
            if self.rejected == 1 or self.rejected % 100 == 0:  # a flood must not flood the log too
                log.warning("kubelet API at its connection limit; closing new connections",
                            extra={"fields": {"limit": self.owner.max_connections, "rejected": self.rejected,
                                              "client": client_address[0]}})
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                  name=f"kubeletapi-conn-{client_address[1]}", daemon=True)
        with self._lock:
            self.connections[id(request)] = (request, thread)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        connection: socket.socket = request
        try:
            request.settimeout(self.owner.handshake_timeout)
            # small answers and log chunks go out at once (no Nagle wait on the client's delayed ACK)
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = self.owner.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            with self._lock:
                self.connections[id(request)] = (connection, threading.current_thread())
            connection.do_handshake()
            _Handler(connection, client_address, self)
        except (ssl.SSLError, OSError) as error:
            log.debug("kubelet API connection from %s ended: %s", client_address[0], error)
        except Exception:
            log.exception("kubelet API connection from %s failed", client_address[0])
        finally:
            self.shutdown_request(connection)
            with self._lock:
                self.connections.pop(id(request), None)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("kubelet API error on a connection from %s", client_address[0])

    def sever_all(self) -> list[threading.Thread]:
        """Shut down every open connection (from outside its thread: by a duplicate of its socket)."""
        with self._lock:
            entries = list(self.connections.values())
        for sock, _thread in entries:
            try:
                fd = sock.fileno()
                if fd >= 0:
                    with socket.socket(fileno=socket.dup(fd)) as duplicate:
                        duplicate.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return [thread for _sock, thread in entries]


class _Handler(http.server.BaseHTTPRequestHandler):
    """Thin: authenticate, authorize, route, write. Business logic lives in the backend and pure modules."""

    protocol_version = "HTTP/1.1"
    server_version = f"vkcmd/{__version__}"
    sys_version = ""
    server: _TLSServer

    def setup(self) -> None:
        self.timeout = self.server.owner.idle_timeout
        super().setup()

    # every method goes through the same path so that authorization sees the real verb
    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (never logs headers, so never a token)
        log.debug("kubelet API %s: " + format, self.client_address[0], *args)

    def _dispatch(self) -> None:
        owner = self.server.owner
        started = time.monotonic()
        url = urlsplit(self.path)
        path = url.path
        if self.headers.get("Content-Length", "0") not in ("", "0") or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # a body is never read: do not reuse the connection
        status = 500
        try:
            if not (path == "/healthz" or path.startswith("/healthz/")):
                user = owner.authenticator.authenticate(self.connection.getpeercert(),
                                                        self.headers.get("Authorization"))
                owner.authorizer.authorize(user, self.command, path)
            route = owner.route(path)
            if self.command != "GET":
                raise MethodNotAllowed(f"method {self.command} is not allowed on {path}")
            status = route(self, path, url.query)
        except ApiError as error:
            status = self._error(_status_of(error), error.message)
        except (ConnectionError, TimeoutError, ssl.SSLError) as error:
            self.close_connection = True
            status = 499
            log.debug("kubelet API client left during %s: %s", path, error)
        except Exception as error:
            log.exception("kubelet API request failed", extra={"fields": {"path": path}})
            status = self._error(_status_of(error), "Internal Server Error")
        finally:
            if owner.metrics is not None:
                owner.metrics.kubelet_request(endpoint_of(path), status)
            log.debug("kubelet API %s %s -> %d in %.1f ms", self.command, path, status,
                      (time.monotonic() - started) * 1000)

    # --- responses ---

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def _error(self, status: int, message: str) -> int:
        headers = {"Allow": "GET"} if status == 405 else None
        if status == 401:
            headers = {"WWW-Authenticate": 'Bearer realm="kubelet"'}
        return self._send(status, message.encode(), _TEXT, headers)

    def send_json(self, document: Any) -> int:
        return self._send(200, json.dumps(document, separators=(",", ":")).encode(), _JSON)

    def send_bytes(self, body: bytes, content_type: str) -> int:
        return self._send(200, body, content_type)

    def stream(self, chunks: Iterator[bytes], stop: threading.Event, watch: bool) -> int:
        """200 with a chunked body, one chunk per item, flushed as it comes; ends when ``chunks`` does.

        Without ``watch`` (not following) the first chunk is read before the
        status is sent, so an error the backend raises lazily still becomes its
        status; a followed stream answers at once, then waits for output.
        """
        watcher = self.server.owner.client_watch
        if watch:
            watcher.add(self.connection, stop)
        started = False
        try:
            first = b"" if watch else next(chunks, b"")
            self.send_response(200)
            self.send_header("Content-Type", _TEXT)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            started = True
            for chunk in itertools.chain((first,), chunks):
                if stop.is_set():
                    break
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if stop.is_set() and watch:
                self.close_connection = True  # the client left (or the server stops): no final chunk to send
            else:
                self.wfile.write(b"0\r\n\r\n")
        except ApiError:
            if not started:
                raise  # nothing sent yet: the caller answers with the error's status
            self.close_connection = True
            log.exception("log stream failed after it started")
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError) as error:
            self.close_connection = True
            log.debug("log stream ended by the client: %s", error)
        except Exception:
            if not started:
                raise
            self.close_connection = True  # the body is cut short: the client sees an incomplete chunked stream
            log.exception("log stream failed")
        finally:
            stop.set()
            if watch:
                watcher.remove(self.connection)
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return 200


# --- routes: (handler, path, query) -> status -------------------------------------------------

def _healthz(handler: _Handler, path: str, query: str) -> int:
    if path != "/healthz":
        raise NotFound("404 page not found")
    return handler.send_bytes(b"ok", _TEXT)


def _pods(handler: _Handler, path: str, query: str) -> int:
    if path not in ("/pods", "/pods/"):
        raise NotFound("404 page not found")
    items = list(handler.server.owner.backend.list_pods())
    return handler.send_json({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})


def _container_logs(handler: _Handler, path: str, query: str) -> int:
    parts = [unquote(p) for p in path.split("/")[2:]]
    if parts and parts[-1] == "":
        parts.pop()
    if len(parts) != 3:
        missing = ["podNamespace", "podID", "container name"][len(parts)] if len(parts) < 3 else None
        if missing:
            raise BadRequest(f"Missing {missing}.")
        raise NotFound("404 page not found")
    namespace = _check_name("namespace", parts[0])
    pod = _check_name("pod name", parts[1], subdomain=True)
    container = _check_name("container name", parts[2])
    owner = handler.server.owner
    options = parse_log_options(parse_qs(query, keep_blank_values=True), owner.clock_ns())
    stop = threading.Event()
    owner.register_stream(stop)
    try:
        chunks = owner.backend.open_container_log(namespace, pod, container, options, stop)
        return handler.stream(iter(chunks), stop, watch=options.follow)
    finally:
        owner.unregister_stream(stop)


def _stats_summary(handler: _Handler, path: str, query: str) -> int:
    if path not in ("/stats/summary", "/stats/summary/"):
        raise NotFound("404 page not found")
    stats = handler.server.owner.stats
    body = stats.render("summary", summary.encode)
    return handler.send_bytes(body, _JSON)


def _metrics_resource(handler: _Handler, path: str, query: str) -> int:
    try:
        body = handler.server.owner.stats.render("resource", lambda s: resource_metrics.render(s).encode())
    except Exception:
        log.exception("measuring usage for /metrics/resource failed")
        body = resource_metrics.render_error().encode()
    return handler.send_bytes(body, resource_metrics.CONTENT_TYPE)


def _metrics(handler: _Handler, path: str, query: str) -> int:
    registry = handler.server.owner.registry
    if registry is None:
        raise NotFound("404 page not found")
    body, content_type = exposition(registry)
    return handler.send_bytes(body, content_type)


_ROUTES: tuple[tuple[str, Callable[[_Handler, str, str], int]], ...] = (
    ("/healthz", _healthz),
    ("/pods", _pods),
    ("/containerLogs", _container_logs),
    ("/stats/summary", _stats_summary),
    ("/metrics/resource", _metrics_resource),
)


class KubeletServer:
    """The kubelet API on ``address:port`` (port 0 picks a free one; see :attr:`port` after :meth:`start`).

    Constructing it has no side effect; :meth:`start` binds and serves in named
    threads; :meth:`stop` closes the listener and every connection (ending
    followed log streams) and joins the threads.
    """

    def __init__(self, *, node_name: str, backend: Backend, ssl_context: ssl.SSLContext,
                 authenticator: Authenticator, authorizer: Authorizer,
                 registry: CollectorRegistry | None = None, metrics: Metrics | None = None,
                 address: str = "0.0.0.0", port: int = 10250, max_connections: int = 256,
                 idle_timeout: float = 60.0, handshake_timeout: float = 10.0, stats_ttl: float = 1.0,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.node_name = node_name
        self.backend = backend
        self.ssl_context = ssl_context
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.registry = registry if registry is not None else (metrics.registry if metrics else None)
        self.metrics = metrics
        self.address = address
        self.requested_port = port
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.clock_ns = clock_ns
        self.stats = summary.StatsSource(node_name, backend.usage, ttl=stats_ttl)
        self.client_watch = _ClientWatch()
        self._streams: set[threading.Event] = set()
        self._streams_lock = threading.Lock()
        self._server: _TLSServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the kubelet API server is not started")
        return self._server.server_address[1]

    @property
    def rejected_connections(self) -> int:
        return self._server.rejected if self._server else 0

    def route(self, path: str) -> Callable[[_Handler, str, str], int]:
        """The handler of ``path``; NotFound when none serves it."""
        for prefix, handler in _ROUTES:
            if path == prefix or path.startswith(prefix + "/"):
                return handler
        if path in ("/metrics", "/metrics/"):
            return _metrics
        raise NotFound("404 page not found")

    def register_stream(self, stop: threading.Event) -> None:
        with self._streams_lock:
            self._streams.add(stop)
            if self._server is None:
                stop.set()

    def unregister_stream(self, stop: threading.Event) -> None:
        with self._streams_lock:
            self._streams.discard(stop)

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the kubelet API server is already started")
        self._server = _TLSServer(self, (self.address, self.requested_port))
        self.client_watch = _ClientWatch()
        self.client_watch.start()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="kubeletapi-accept", daemon=True)
        self._thread.start()
        log.info("kubelet API listening", extra={"fields": {"address": self.address, "port": self.port}})

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, end every stream and connection, join the threads (within ``timeout``)."""
        server, self._server = self._server, None
        if server is None:
            return
        with self._streams_lock:
            for stop in self._streams:
                stop.set()
        server.shutdown()
        server.server_close()
        self.client_watch.close()
        deadline = time.monotonic() + timeout
        for thread in server.sever_all():
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        log.info("kubelet API stopped")
