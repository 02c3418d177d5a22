"""The kubelet API server: its settings and lifecycle, composed of ``transport`` and ``routes``.

Constructing it has no side effect; :meth:`KubeletServer.start` binds and
serves (accept thread, connection threads, the client watch); :meth:`stop`
ends every stream and connection and joins the threads. What is served comes
from the :class:`~.backend.Backend`.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from vkcmd.kubeletapi import routes, summary
from vkcmd.kubeletapi.auth import Authenticator, Authorizer
from vkcmd.kubeletapi.backend import Backend
from vkcmd.kubeletapi.metrics import Metrics
from vkcmd.kubeletapi.transport import ClientWatch, Handler, TLSServer

log = logging.getLogger("vkcmd.kubeletapi")


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
                 max_unauthenticated: int = 64, idle_timeout: float = 60.0, handshake_timeout: float = 5.0,
                 header_timeout: float = 10.0, stats_ttl: float = 1.0, anonymous_metrics: bool = False,
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
        self.max_unauthenticated = min(max_unauthenticated, max_connections)
        self.header_timeout = header_timeout
        self.anonymous_metrics = anonymous_metrics
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.clock_ns = clock_ns
        self.stats = summary.StatsSource(node_name, backend.usage, ttl=stats_ttl)
        self.client_watch = ClientWatch()
        self._streams: set[threading.Event] = set()
        self._streams_lock = threading.Lock()
        self._server: TLSServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the kubelet API server is not started")
        return self._server.server_address[1]

    @property
    def rejected_connections(self) -> int:
        return self._server.table.rejected if self._server else 0

    @property
    def open_connections(self) -> int:
        return len(self._server.table) if self._server else 0

    def handle(self, handler: Handler) -> None:
        routes.handle(handler)

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
        self._server = TLSServer(self, (self.address, self.requested_port))
        self.client_watch = ClientWatch()
        self.client_watch.start()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="kubeletapi-accept", daemon=True)
        self._thread.start()
        log.info("kubelet API listening", extra={"fields": {"address": self.address, "port": self.port}})
        if self.anonymous_metrics:
            log.warning("ANONYMOUS ACCESS: the kubelet API serves %s to callers without credentials "
                        "(VK_ANONYMOUS_METRICS=true); logs, exec, attach and port-forward still require them",
                        ", ".join(sorted(routes.ANONYMOUS_PATHS)))

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
        for thread in server.table.sever_all():
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        log.info("kubelet API stopped")
