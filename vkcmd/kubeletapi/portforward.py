"""``/portForward``: the kubelet's port-forward over SPDY/3.1 (``portforward.k8s.io``).

The client opens two streams per connection it forwards, both with ``port``
and ``requestID`` headers: ``streamType: error`` and ``streamType: data``. When
both are open, the pod's port is dialled (pods share the node's network: the
pod's address on the node) and bytes are copied both ways; a dial failure is
written to the error stream. Several ports and connections run at once. The
WebSocket forms (the kubelet's channels, kubectl's SPDY tunnel) are ``wsportforward``'s.
"""

from __future__ import annotations

import logging
import socket
import threading
from urllib.parse import unquote

from vkcmd.kubeletapi import podsockets, spdy, wsportforward, wsstreams
from vkcmd.kubeletapi.backend import BadRequest, NotFound
from vkcmd.kubeletapi.streams import negotiate
from vkcmd.kubeletapi.transport import Handler

log = logging.getLogger("vkcmd.kubeletapi.portforward")

PROTOCOLS = ("portforward.k8s.io",)


class _Forwards:
    """The pairs of streams of one session, by request id; each complete pair gets a copying thread."""

    def __init__(self, session_ref: list[spdy.Session], address: str) -> None:
        self._session_ref = session_ref
        self._address = address
        self._lock = threading.Lock()
        self._pairs: dict[str, dict[str, int]] = {}
        self._sockets: dict[int, socket.socket] = {}  # data stream id -> its connection to the pod
        self._early: dict[int, list[bytes]] = {}
        self._ended: set[int] = set()  # data streams the client ended before the pod was reached
        self._reset: set[int] = set()  # streams the client reset: no frame more goes out on them
        self.threads: list[threading.Thread] = []

    def opened(self, frame: spdy.Frame) -> bool:
        kind, port, request = frame.header("streamtype"), frame.header("port"), frame.header("requestid")
        if kind not in ("data", "error") or not port.isdigit() or not 0 < int(port) < 65536:
            return False
        with self._lock:
            pair = self._pairs.setdefault(request or str(frame.stream_id), {})
            pair[kind] = frame.stream_id
            pair["port"] = int(port)
            if "data" in pair and "error" in pair:
                thread = threading.Thread(target=self._forward, args=(dict(pair),), daemon=True,
                                          name=f"kubeletapi-forward-{port}")
                self.threads.append(thread)
                thread.start()
        return True

    def data(self, stream_id: int, data: bytes, fin: bool) -> None:
        with self._lock:
            sock = self._sockets.get(stream_id)
            if sock is None:
                if data:
                    self._early.setdefault(stream_id, []).append(data)
                if fin:
                    self._ended.add(stream_id)
                return
        if fin:  # the client is done (kubectl: its local connection closed): the forward ends, as the
            self._ended.add(stream_id)  # kubelet's does when either direction ends; no more DATA is sent
        try:
            if data:
                sock.sendall(data)
        except OSError:
            pass
        if fin:
            podsockets.shut(sock)

    def reset(self, stream_id: int) -> None:
        """The client gave up the stream (its local connection closed): stop copying from the pod too."""
        with self._lock:
            sock = self._sockets.get(stream_id)
            self._ended.add(stream_id)
            self._reset.add(stream_id)
        if sock is not None:
            podsockets.shut(sock)

    def _forward(self, pair: dict[str, int]) -> None:
        session = self._session_ref[0]
        try:
            sock = socket.create_connection((self._address, pair["port"]), timeout=10)
        except OSError as error:
            message = (f"error forwarding port {pair['port']} to pod: failed to connect to "
                       f"{self._address}:{pair['port']}: {error.strerror or error}")
            session.send_data(pair["error"], message.encode(), fin=True)
            session.send_data(pair["data"], b"", fin=True)
            return
        sock.settimeout(None)
        with self._lock:
            early = self._early.pop(pair["data"], [])
            self._sockets[pair["data"]] = sock
            ended = pair["data"] in self._ended
        try:
            if ended:
                return
            for data in early:
                sock.sendall(data)
            while True:
                chunk = _gather(sock)
                if not chunk or pair["data"] in self._ended:  # what the pod sends after the client left is
                    break                                     # dropped: kubectl no longer reads that stream
                session.send_data(pair["data"], chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.pop(pair["data"], None)
                client_left = pair["data"] in self._ended
            if client_left:  # the pod learns it at once, not by stalling
                podsockets.abort_on_close(sock)
            sock.close()
            with self._lock:
                self._ended.discard(pair["data"])
                reset = {pair["error"], pair["data"]} & self._reset
                self._reset -= reset
            for stream_id in (pair["error"], pair["data"]):  # the error first: kubectl's handleConnection
                if stream_id not in reset:                    # waits for it
                    session.send_data(stream_id, b"", fin=True)

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets.values():
                podsockets.shut(sock)


def _gather(sock: socket.socket) -> bytes:
    """What the pod has sent, up to one frame (``spdy.DATA_CHUNK``): a blocking read, then what is there."""
    chunk = sock.recv(spdy.DATA_CHUNK)
    while chunk and len(chunk) < spdy.DATA_CHUNK:
        try:
            more = sock.recv(spdy.DATA_CHUNK - len(chunk), socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            break
        if not more:
            break
        chunk += more
    return chunk


def port_forward_route(handler: Handler, path: str, query: str) -> int:
    from vkcmd.kubeletapi.routes import check_name

    parts = [unquote(p) for p in path.split("/")[2:] if p != ""]
    if len(parts) not in (2, 3):
        raise NotFound("404 page not found")
    namespace, pod = check_name("namespace", parts[0]), check_name("pod name", parts[1], subdomain=True)
    address = handler.server.owner.backend.pod_address(namespace, pod)
    if wsstreams.is_websocket(handler):
        if wsportforward.offers_tunnel(handler):
            return wsportforward.serve_tunnel(handler, lambda reader, write: serve(reader, write, address))
        return wsportforward.serve_channels(handler, address, wsportforward.ports_of(query))
    if handler.headers.get("Upgrade", "").lower() != "spdy/3.1":
        raise BadRequest("Upgrade request required")
    protocol = negotiate(handler.headers.get_all("X-Stream-Protocol-Version") or [], PROTOCOLS)
    connection = handler.upgrade("SPDY/3.1", {"X-Stream-Protocol-Version": protocol})
    serve(handler.rfile, connection.sendall, address)
    return 101


def serve(reader, write, address: str) -> None:
    """One port-forward SPDY session read from ``reader``, written with ``write``, until the client ends it."""
    holder: list[spdy.Session] = []
    forwards = _Forwards(holder, address)
    session = spdy.Session(reader, write, forwards.opened, forwards.data, forwards.reset)
    holder.append(session)
    try:
        session.serve()
    finally:
        forwards.close()
        for thread in list(forwards.threads):
            thread.join(5)
        session.close()
