"""The kubelet API's transport: TLS connections, their budget and deadlines, bounded request heads, replies.

One accept thread; each connection gets a named daemon thread that does its
own TLS handshake, then serves HTTP/1.1 keep-alive requests. Connections that
have not authenticated have their own small budget and short deadlines, and the
oldest idle ones are closed first when a budget is full, so idle sockets cannot
lock authenticated callers out (issue 11). What a request means is not known
here: every parsed request goes to ``owner.handle(handler)`` (``routes``).
"""

from __future__ import annotations

import http.client
import http.server
import itertools
import logging
import select
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from vkcmd import __version__
from vkcmd.kubeletapi.backend import ApiError

log = logging.getLogger("vkcmd.kubeletapi")

TEXT = "text/plain; charset=utf-8"
MAX_REQUEST_LINE = 65536  # http.server's bound (414 above it)
MAX_HEADER_BYTES = 1 << 20  # the Go kubelet's http.Server MaxHeaderBytes (431 above it)


class Owner(Protocol):
    """What the transport needs from the server that owns it (``server.KubeletServer``)."""

    ssl_context: ssl.SSLContext
    max_connections: int
    max_unauthenticated: int
    handshake_timeout: float
    header_timeout: float
    idle_timeout: float
    client_watch: ClientWatch

    def handle(self, handler: Handler) -> None: ...


class ClientWatch:
    """One thread noticing when the client of a followed stream goes away.

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

    def close(self) -> None:
        with self._lock:
            for stop in self._watched.values():
                stop.set()
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


@dataclass(eq=False)
class Connection:
    """One accepted connection as the budget sees it."""

    fd: int  # the accepted socket's descriptor (the TLS socket takes it over; closed only under the table lock)
    accepted: float
    thread: threading.Thread | None = None  # set once admitted
    authenticated: bool = False
    busy: bool = False
    since: float = 0.0  # when it last became idle
    deadline: float | None = None  # closed when idle past it (None: no deadline while busy)
    closed: bool = field(default=False)


def _sever(fd: int) -> None:
    """Shut a connection down from outside its thread (by a duplicate of its descriptor; its thread closes it)."""
    try:
        with socket.socket(fileno=socket.dup(fd)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Table:
    """The open connections, their states and deadlines; every decision to close one is made here."""

    def __init__(self, owner: Owner) -> None:
        self._owner = owner
        self._lock = threading.Lock()
        self._open: list[Connection] = []
        self.rejected = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, sock: socket.socket) -> Connection | None:
        """Register a new connection, closing the oldest idle ones to make room; None when all are busy."""
        now = time.monotonic()
        owner = self._owner
        with self._lock:
            pending = [c for c in self._open if not c.authenticated and not c.busy]
            if len(pending) >= owner.max_unauthenticated:
                self._evict(min(pending, key=lambda c: c.since))
            if len(self._open) >= owner.max_connections:
                idle = [c for c in self._open if not c.busy]
                if not idle:
                    self.rejected += 1
                    return None
                # the unauthenticated first, then the longest idle
                self._evict(min(idle, key=lambda c: (c.authenticated, c.since)))
            entry = Connection(sock.fileno(), accepted=now, since=now, deadline=now + owner.handshake_timeout)
            self._open.append(entry)
            return entry

    def _evict(self, entry: Connection) -> None:
        self.evicted += 1
        self._forget(entry)
        _sever(entry.fd)

    def _forget(self, entry: Connection) -> None:
        if not entry.closed:
            entry.closed = True
            self._open.remove(entry)

    def update(self, entry: Connection, *, busy: bool | None = None, authenticated: bool | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            if authenticated:
                entry.authenticated = True
            if busy is not None:
                entry.busy = busy
            if entry.busy:
                entry.deadline = None
            else:
                entry.since = now
                timeout = self._owner.idle_timeout if entry.authenticated else self._owner.header_timeout
                entry.deadline = now + timeout

    def expire(self) -> None:
        """Close every idle connection past its deadline (from the accept loop)."""
        now = time.monotonic()
        with self._lock:
            for entry in [c for c in self._open if c.deadline is not None and c.deadline <= now]:
                self._evict(entry)

    def closed(self, entry: Connection, close: Callable[[], None]) -> None:
        """The connection's thread ends: forget it, then close (under the lock, so no descriptor is reused
        while an eviction may still duplicate it)."""
        with self._lock:
            self._forget(entry)
            close()

    def sever_all(self) -> list[threading.Thread]:
        with self._lock:
            entries = list(self._open)
            for entry in entries:
                _sever(entry.fd)
        return [entry.thread for entry in entries if entry.thread is not None]


class TLSServer(http.server.ThreadingHTTPServer):
    """Accepts plain TCP; every connection thread does its own TLS handshake within the budget."""

    allow_reuse_address = True
    request_queue_size = 128
    daemon_threads = True
    block_on_close = False  # KubeletServer.stop joins the connection threads itself

    def __init__(self, owner: Owner, address: tuple[str, int]) -> None:
        self.owner = owner
        self.table = _Table(owner)
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: it resolves the host name (slow, useless)
        self.server_name, self.server_port = self.server_address[:2]

    def service_actions(self) -> None:
        self.table.expire()  # serve_forever calls this every poll interval

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        entry = self.table.admit(request)
        if entry is None:
            rejected = self.table.rejected
            if rejected == 1 or rejected % 100 == 0:  # a flood must not flood the log too
                log.warning("kubelet API at its connection limit with every connection busy; closing new ones",
                            extra={"fields": {"limit": self.owner.max_connections, "rejected": rejected,
                                              "client": client_address[0]}})
            self.shutdown_request(request)
            return
        entry.thread = threading.Thread(target=self._serve_connection, args=(request, client_address, entry),
                                        name=f"kubeletapi-conn-{client_address[1]}", daemon=True)
        entry.thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any, entry: Connection) -> None:
        connection: socket.socket = request
        try:
            request.settimeout(self.owner.handshake_timeout)
            # small answers and log chunks go out at once (no Nagle wait on the client's delayed ACK)
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = self.owner.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            connection.do_handshake()
            # a certificate the TLS layer verified against the client CA authenticates the connection
            self.table.update(entry, authenticated=bool(connection.getpeercert()))
            handler = Handler.__new__(Handler)
            handler.entry = entry
            handler.__init__(connection, client_address, self)
        except (ssl.SSLError, OSError) as error:
            log.debug("kubelet API connection from %s ended: %s", client_address[0], error)
        except Exception:
            log.exception("kubelet API connection from %s failed", client_address[0])
        finally:
            self.table.closed(entry, lambda: self.shutdown_request(connection))

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("kubelet API error on a connection from %s", client_address[0])


class HeadTooLarge(http.client.HTTPException):
    """The request head passed MAX_HEADER_BYTES (parse_request answers 431 and closes)."""


class _BoundedReader:
    """The connection's reader; while a request head is read, at most ``remaining`` bytes of it."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.remaining: int | None = None

    def readline(self, size: int = -1) -> bytes:
        if self.remaining is None:
            return self._raw.readline(size)
        cap = self.remaining + 1 if size is None or size < 0 else min(size, self.remaining + 1)
        line = self._raw.readline(cap)
        self.remaining -= len(line)
        if self.remaining < 0:
            raise HeadTooLarge(f"request head over {MAX_HEADER_BYTES} bytes")
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class Handler(http.server.BaseHTTPRequestHandler):
    """Parses bounded request heads and writes replies; what a request means is the owner's ``handle``."""

    protocol_version = "HTTP/1.1"
    server_version = f"vkcmd/{__version__}"
    sys_version = ""
    server: TLSServer
    entry: Connection

    def setup(self) -> None:
        super().setup()
        self.rfile = _BoundedReader(self.rfile)

    def handle_one_request(self) -> None:
        entry, owner = self.entry, self.server.owner
        self.connection.settimeout(owner.idle_timeout if entry.authenticated else owner.header_timeout)
        self.rfile.remaining = MAX_HEADER_BYTES
        try:
            super().handle_one_request()
        except HeadTooLarge:  # the request line itself took the budget (parse_request handles the headers)
            self.close_connection = True
        finally:
            self.rfile.remaining = None
            self.server.table.update(entry, busy=False)

    # every method goes through the same path so that authorization sees the real verb
    def do_GET(self) -> None:  # noqa: N802
        self.rfile.remaining = None  # the head is read; a body or an upgraded stream is not bounded here
        self.server.table.update(self.entry, busy=True)
        if self.headers.get("Content-Length", "0") not in ("", "0") or self.headers.get("Transfer-Encoding"):
            if self.headers.get("Upgrade") is None:
                self.close_connection = True  # a body is never read: do not reuse the connection
        self.server.owner.handle(self)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET  # noqa: N815

    def authenticated(self) -> None:
        """The request's caller authenticated: the connection leaves the unauthenticated budget."""
        self.server.table.update(self.entry, authenticated=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (never logs headers, so never a token)
        log.debug("kubelet API %s: " + format, self.client_address[0], *args)

    # --- replies ---

    def send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def upgrade(self, protocol: str, headers: dict[str, str]) -> socket.socket:
        """Answer 101 Switching Protocols to ``protocol``; the caller then owns the connection until it
        returns (read through ``self.rfile``: bytes the client sent early may be buffered there)."""
        self.send_response(101)
        self.send_header("Connection", "Upgrade")
        self.send_header("Upgrade", protocol)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True  # after the upgraded session nothing HTTP follows
        self.connection.settimeout(None)
        return self.connection

    @staticmethod
    def end_upgraded(say_goodbye: Callable[[], None], connection: socket.socket, reader: threading.Thread) -> None:
        """End an upgraded session: the protocol's goodbye, both directions shut, its reader joined."""
        say_goodbye()
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        reader.join(5)

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
            self.send_header("Content-Type", TEXT)
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
