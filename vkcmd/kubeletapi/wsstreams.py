"""``/exec`` and ``/attach`` over WebSocket: the channel subprotocols an API server passes through to the kubelet.

``channel.k8s.io`` and ``v4.channel.k8s.io`` (binary messages, the first byte is
the channel: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize), their ``base64``
variants (text messages, the channel as a digit, the rest base64) and
``v5.channel.k8s.io`` (v4 plus ``[255, channel]`` closing a channel). The
handshake and framing are wsproto's; the command side is ``streams``'.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Iterator

from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, RejectConnection, Request,
                            TextMessage)

from vkcmd.kubeletapi.transport import Handler

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io",
             "base64.channel.k8s.io")
CHANNELS = {"stdin": 0, "stdout": 1, "stderr": 2, "error": 3, "resize": 4}


def is_websocket(handler: Handler) -> bool:
    return handler.headers.get("Upgrade", "").lower() == "websocket"


class Channels:
    """The writing side: one message per write, on the channel standing for the stream id."""

    def __init__(self, ws: WSConnection, send: Callable[[bytes], None], encoded: bool) -> None:
        self._ws = ws
        self._send = send
        self._encoded = encoded
        self._lock = threading.Lock()
        self.closed = False

    def write(self, event) -> None:
        with self._lock:
            if not self.closed:
                self._send(self._ws.send(event))

    def send_data(self, channel: int, data: bytes, fin: bool = False) -> None:
        if not data:
            return  # a WebSocket channel has no end of its own; the close of the connection ends them all
        if self._encoded:
            self.write(TextMessage(chr(ord("0") + channel) + base64.b64encode(data).decode()))
        else:
            self.write(BytesMessage(bytes([channel]) + data))

    def close(self) -> None:
        try:
            self.write(CloseConnection(code=1000))
        except OSError:
            pass
        with self._lock:
            self.closed = True


def handshake(handler: Handler, supported: tuple[str, ...]) -> tuple[WSConnection, str] | None:
    """Accept ``handler``'s WebSocket upgrade (wsproto) with the first offered protocol of ``supported``
    ("" when the client offers none); None when it offers only others (answered 400)."""
    ws = WSConnection(ConnectionType.SERVER)
    head = [handler.requestline] + [f"{name}: {value}" for name, value in handler.headers.items()]
    ws.receive_data(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    request = next((e for e in ws.events() if isinstance(e, Request)), None)
    connection = handler.connection
    handler.close_connection = True
    if request is None:
        return None
    offered = list(request.subprotocols)
    chosen = next((p for p in offered if p in supported), None)
    if chosen is None and offered:
        connection.sendall(ws.send(RejectConnection(status_code=400)))
        return None
    connection.settimeout(None)
    connection.sendall(ws.send(AcceptConnection(subprotocol=chosen)))
    return ws, chosen or ""


def session(handler: Handler, streams, body: Callable[..., None]) -> int:
    """Handshake (wsproto), bind channels to ``streams``, run ``body(channels, streams, protocol)``, close."""
    accepted = handshake(handler, PROTOCOLS)
    if accepted is None:
        return 400
    ws, protocol = accepted
    protocol = protocol or "channel.k8s.io"
    connection = handler.connection
    channels = Channels(ws, connection.sendall, encoded="base64" in protocol)
    streams.bind_channels({name: CHANNELS[name] for name in streams.wanted})
    reader = threading.Thread(target=_read, args=(handler, ws, channels, streams, protocol), daemon=True,
                              name=f"kubeletapi-ws-{handler.client_address[1]}")
    reader.start()
    streams.client_gone = lambda: not reader.is_alive()
    try:
        body(channels, streams, "channel.k8s.io" if protocol in ("channel.k8s.io", "base64.channel.k8s.io")
             else "v4.channel.k8s.io")  # v4 and v5 end the error channel with a Status
    finally:
        handler.end_upgraded(channels.close, connection, reader)
    return 101


def messages(handler: Handler, ws: WSConnection, channels: Channels) -> Iterator[tuple[bytes, bool]]:
    """The client's complete messages as (payload, was text), answering pings, until it closes or leaves."""
    pending: list[bytes | str] = []
    while True:
        try:
            data = handler.rfile.read1(65536)
        except (OSError, ValueError):
            return
        if not data:
            return
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, (BytesMessage, TextMessage)):
                pending.append(event.data)
                if not event.message_finished:
                    continue
                message = b"".join(p if isinstance(p, bytes) else p.encode() for p in pending)
                pending = []
                yield message, isinstance(event, TextMessage)
            elif isinstance(event, Ping):
                channels.write(event.response())
            elif isinstance(event, CloseConnection):
                return


def _read(handler: Handler, ws: WSConnection, channels: Channels, streams, protocol: str) -> None:
    for message, encoded in messages(handler, ws, channels):
        _deliver(message, streams, encoded=encoded, v5=protocol == "v5.channel.k8s.io")


def split(message: bytes, encoded: bool) -> tuple[int, bytes] | None:
    """(channel, payload) of one channel message (base64 variants: a digit, then base64); None if malformed."""
    if not message:
        return None
    if not encoded:
        return message[0], message[1:]
    try:
        return message[0] - ord("0"), base64.b64decode(message[1:])
    except (binascii.Error, ValueError):
        return None


def _deliver(message: bytes, streams, *, encoded: bool, v5: bool) -> None:
    parts = split(message, encoded)
    if parts is None:
        return
    channel, body = parts
    if v5 and channel == 255 and body:
        streams.data(body[0], b"", True)  # the client closed that channel (stdin: end of input)
    else:
        streams.data(channel, body, False)
