"""WebSocket port-forward (``SPDY/3.1+portforward.k8s.io``, kubectl's default from 1.31) to SPDY toward the kubelet.

kubectl tunnels SPDY inside binary WebSocket messages (client-go's
TunnelingConnection); kube-apiserver unwraps them and dials the kubelet with
SPDY/3.1 (``portforward.k8s.io``), as this does: message payloads go up as raw
bytes, the kubelet's bytes come down as binary messages.
"""

from __future__ import annotations

import threading

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, RejectConnection, Request

from tools.sockpump import pump

from . import errors
from .wsbridge import client_messages, dial_spdy, relay, request_bytes

TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"


def tunnel(handler, path: str, node: dict, ctx) -> None:
    """Accept the caller's tunnelling WebSocket, dial the kubelet with SPDY and relay the bytes both ways."""
    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(request_bytes(handler))
    request = next((e for e in ws.events() if isinstance(e, Request)), None)
    if request is None:
        raise errors.bad_request("not a WebSocket upgrade request")
    handler.close_connection = True
    if TUNNEL_PROTOCOL not in request.subprotocols:  # kubectl falls back to SPDY on an upgrade failure
        handler.connection.sendall(ws.send(RejectConnection(status_code=400)))
        return
    upstream, reader = dial_spdy(node, ctx, path, "portforward.k8s.io")
    client = handler.connection
    client.settimeout(None)
    lock = threading.Lock()

    def to_client(event) -> None:
        with lock:
            client.sendall(ws.send(event))

    def raw(data: bytes) -> None:
        with lock:
            client.sendall(data)

    to_client(AcceptConnection(subprotocol=TUNNEL_PROTOCOL))
    down = threading.Thread(target=pump, args=(_Reader(reader), _Messages(to_client)), daemon=True,
                            name="kubelite-pf-tunnel-down")
    relay(down, lambda: _upstream(handler.rfile, ws, upstream, raw, lock), upstream)


class _Reader:
    """The kubelet's side as ``pump`` reads it (what the head reader already buffered comes first)."""

    def __init__(self, reader) -> None:
        self._reader = reader

    def recv(self, size: int) -> bytes:
        return self._reader.read1(size)

    def shutdown(self, how: int) -> None:
        pass


class _Messages:
    """The caller's side as ``pump`` writes it: each chunk one binary message; the end a close."""

    def __init__(self, to_client) -> None:
        self._to_client = to_client

    def sendall(self, data: bytes) -> None:
        self._to_client(BytesMessage(data))

    def shutdown(self, how: int) -> None:
        try:
            self._to_client(CloseConnection(code=1000))
        except Exception:  # the caller may be gone already
            pass


def _upstream(rfile, ws: WSConnection, upstream, raw, lock: threading.Lock) -> None:
    """The caller's messages -> the kubelet's socket, as the bytes of the SPDY session they carry."""
    for message in client_messages(rfile, ws, raw, lock):
        try:
            upstream.sendall(message)
        except OSError:
            return
