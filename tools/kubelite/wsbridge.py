"""WebSocket ``v5.channel.k8s.io`` (kubectl's default) translated to SPDY toward the kubelet, as kube-apiserver does.

The caller's WebSocket (wsproto) carries channels in the first byte of each
binary message (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; in v5, 255
closes a channel); the kubelet is dialled with SPDY/3.1 offering
``v4.channel.k8s.io`` and one stream per channel (``vkcmd.kubeletapi.spdy``).
"""

from __future__ import annotations

import socket
import ssl
import threading
from urllib.parse import parse_qsl

from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, RejectConnection, Request,
                            TextMessage)

from vkcmd.kubeletapi import spdy

from . import errors
from .logproxy import kubelet_address

WS_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
_CHANNELS = {"stdin": 0, "stdout": 1, "stderr": 2, "error": 3, "resize": 4}


def request_bytes(handler) -> bytes:
    lines = [handler.requestline] + [f"{name}: {value}" for name, value in handler.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def bridge(handler, path: str, node: dict, ctx: ssl.SSLContext, raw_query: str) -> None:
    """Accept the caller's WebSocket, dial the kubelet with SPDY, and relay channels until the command ends."""
    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(request_bytes(handler))
    request = next((e for e in ws.events() if isinstance(e, Request)), None)
    if request is None:
        raise errors.bad_request("not a WebSocket upgrade request")
    protocol = next((p for p in request.subprotocols if p in WS_PROTOCOLS), None)
    if protocol is None:
        handler.connection.sendall(ws.send(RejectConnection(status_code=400)))
        handler.close_connection = True
        return
    flags = {k: v for k, v in parse_qsl(raw_query) if k in ("stdin", "stdout", "stderr", "tty")}
    wanted = ["error"] + [name for name in ("stdin", "stdout", "stderr") if flags.get(name) in ("true", "1")]
    if flags.get("tty") in ("true", "1"):
        wanted = [name for name in wanted if name != "stderr"] + ["resize"]
    upstream, reader = dial_spdy(node, ctx, path)
    client = handler.connection
    client.settimeout(None)
    lock = threading.Lock()

    def to_client(data: bytes) -> None:
        with lock:
            client.sendall(data)

    to_client(ws.send(AcceptConnection(subprotocol=protocol)))
    codec = spdy.HeaderCodec()
    ids = {name: 1 + 2 * index for index, name in enumerate(wanted)}
    for name, stream_id in ids.items():
        upstream.sendall(spdy.encode_syn_stream(codec, stream_id, {"streamType": name}))
    channel_of = {stream_id: _CHANNELS[name] for name, stream_id in ids.items()}
    down = threading.Thread(target=_downstream, args=(reader, channel_of, ws, to_client, lock), daemon=True,
                            name="kubelite-ws-down")
    handler.close_connection = True
    relay(down, lambda: _upstream(handler.rfile, ws, ids, upstream, to_client, lock), upstream)


def relay(down: threading.Thread, up, upstream) -> None:
    """Start ``down`` (kubelet -> caller), run ``up`` (caller -> kubelet) here; then end the kubelet side."""
    down.start()
    try:
        up()
    finally:
        try:
            upstream.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        down.join(10)
        upstream.close()


def dial_spdy(node: dict, ctx: ssl.SSLContext, path: str, protocol: str = "v4.channel.k8s.io"):
    """The kubelet's SPDY upgrade of ``path`` offering ``protocol``: (its socket, a reader past the 101)."""
    host, port = kubelet_address(node)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: Upgrade", "Upgrade: SPDY/3.1",
             f"X-Stream-Protocol-Version: {protocol}", "Content-Length: 0"]
    try:
        upstream = ctx.wrap_socket(socket.create_connection((host, port), timeout=30), server_hostname=host)
        upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        reader = upstream.makefile("rb")
        status_line = reader.readline()
        headers = {}
        while True:
            line = reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
    except OSError as error:
        raise errors.ApiError(500, "InternalError", f"error dialing backend: {error}") from None
    status = int(status_line.split(b" ", 2)[1])
    if status != 101:
        body = reader.read(min(int(headers.get("content-length") or 0), 1 << 16)).decode(errors="replace").strip()
        upstream.close()
        raise errors.ApiError(status, "BadRequest" if status < 500 else "InternalError", body or "upgrade failed")
    upstream.settimeout(None)
    return upstream, reader


def _downstream(reader, channel_of: dict[int, int], ws: WSConnection, to_client, lock: threading.Lock) -> None:
    """Kubelet frames -> WebSocket messages; the error stream's end (its Status) ends the session."""
    codec = spdy.HeaderCodec()
    try:
        while True:
            frame = spdy.read_frame(reader, codec)
            if frame.kind == 0 and frame.stream_id in channel_of:
                if frame.data:
                    with lock:
                        data = ws.send(BytesMessage(bytes([channel_of[frame.stream_id]]) + frame.data))
                    to_client(data)
                if frame.fin and channel_of[frame.stream_id] == _CHANNELS["error"]:
                    break
            elif frame.kind == spdy.GOAWAY:
                break
    except (EOFError, OSError, spdy.ProtocolError):
        pass
    try:
        with lock:
            data = ws.send(CloseConnection(code=1000))
        to_client(data)
    except Exception:  # the client may be gone already
        pass


def client_messages(rfile, ws: WSConnection, to_client, lock: threading.Lock):
    """The caller's complete messages (bytes), answering its pings, until it closes or leaves."""
    pending = b""
    while True:
        try:
            data = rfile.read1(65536)
        except OSError:
            return
        if not data:
            return
        with lock:
            ws.receive_data(data)
            events = list(ws.events())
        for event in events:
            if isinstance(event, (BytesMessage, TextMessage)):
                pending += event.data if isinstance(event.data, bytes) else event.data.encode()
                if event.message_finished:
                    message, pending = pending, b""
                    if message:
                        yield message
            elif isinstance(event, Ping):
                with lock:
                    reply = ws.send(event.response())
                to_client(reply)
            elif isinstance(event, CloseConnection):
                return


def _upstream(rfile, ws: WSConnection, ids: dict[str, int], upstream, to_client, lock: threading.Lock) -> None:
    """WebSocket messages -> kubelet streams (stdin, resize; v5's close of stdin -> FIN)."""
    for message in client_messages(rfile, ws, to_client, lock):
        channel, body = message[0], message[1:]
        if channel == 255 and body[:1] == b"\x00" and "stdin" in ids:
            upstream.sendall(spdy.encode_data(ids["stdin"], b"", fin=True))
        elif channel == 0 and "stdin" in ids:
            upstream.sendall(spdy.encode_data(ids["stdin"], body))
        elif channel == 4 and "resize" in ids:
            upstream.sendall(spdy.encode_data(ids["resize"], body))
