"""``/portForward`` over WebSocket: the kubelet's channel protocol, and SPDY tunnelled in WebSocket messages.

Channels (no subprotocol, ``v4.channel.k8s.io``, ``v4.base64.channel.k8s.io``):
the ``port`` query parameters name the ports; port *i* has data channel 2*i*
and error channel 2*i*+1, and the first message on each carries the port as
2 little-endian bytes, as the kubelet's websocket.go does. One connection per
port. ``SPDY/3.1+portforward.k8s.io`` (kubectl's tunnel, which an API server
with ExtendWebSocketsToKubelet may pass through): binary messages carry the
SPDY session that ``portforward`` serves.
"""

from __future__ import annotations

import socket
import struct
import threading
from urllib.parse import parse_qs

from wsproto.events import BytesMessage

from vkcmd.kubeletapi import podsockets, wsstreams
from vkcmd.kubeletapi.backend import BadRequest
from vkcmd.kubeletapi.transport import Handler

TUNNEL = "SPDY/3.1+portforward.k8s.io"
CHANNEL_PROTOCOLS = ("v4.channel.k8s.io", "v4.base64.channel.k8s.io")


def ports_of(query: str) -> list[int]:
    """The ``port`` parameters (each may list several, comma-separated), as the kubelet parses them."""
    values = parse_qs(query, keep_blank_values=True).get("port") or []
    if not values:
        raise BadRequest('query parameter "port" is required')
    ports = []
    for value in values:
        for part in value.split(","):
            if not part.isdigit() or not 0 < int(part) < 65536:
                raise BadRequest(f'unable to parse "{value}" as a port')
            ports.append(int(part))
    return ports


def offers_tunnel(handler: Handler) -> bool:
    offered = ",".join(handler.headers.get_all("Sec-WebSocket-Protocol") or [])
    return TUNNEL in (p.strip() for p in offered.split(","))


def serve_tunnel(handler: Handler, serve_session) -> int:
    """Accept the tunnel and run ``serve_session(reader, write)`` (the SPDY side) over its messages."""
    accepted = wsstreams.handshake(handler, (TUNNEL,))
    if accepted is None:
        return 400
    ws, _ = accepted
    channels = wsstreams.Channels(ws, handler.connection.sendall, encoded=False)
    reader = _MessageReader(wsstreams.messages(handler, ws, channels))
    try:
        serve_session(reader, lambda data: channels.write(BytesMessage(data)))
    finally:
        channels.close()
        podsockets.shut(handler.connection)
    return 101


class _MessageReader:
    """The tunnel's byte stream as ``spdy.read_frame`` reads it: ``read(n)`` across message bounds."""

    def __init__(self, messages) -> None:
        self._messages = messages
        self._buffer = b""

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = next(self._messages, None)
            if chunk is None:
                break
            self._buffer += chunk[0]
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def serve_channels(handler: Handler, address: str, ports: list[int]) -> int:
    """The kubelet's WebSocket port-forward: one connection to the pod per port, until all end."""
    accepted = wsstreams.handshake(handler, CHANNEL_PROTOCOLS)
    if accepted is None:
        return 400
    ws, protocol = accepted
    channels = wsstreams.Channels(ws, handler.connection.sendall, encoded="base64" in protocol)
    sockets: dict[int, socket.socket] = {}
    forwards = []
    for index, port in enumerate(ports):
        prefix = struct.pack("<H", port)
        channels.send_data(2 * index, prefix)
        channels.send_data(2 * index + 1, prefix)
        try:
            sockets[2 * index] = socket.create_connection((address, port), timeout=10)
            sockets[2 * index].settimeout(None)
        except OSError as error:
            channels.send_data(2 * index + 1, (f"error forwarding port {port} to pod: failed to connect to "
                                               f"{address}:{port}: {error.strerror or error}").encode())
            continue
        forward = threading.Thread(target=_from_pod, args=(sockets[2 * index], channels, 2 * index), daemon=True,
                                   name=f"kubeletapi-wsforward-{port}")
        forward.start()
        forwards.append(forward)
    reader = threading.Thread(target=_to_pods, args=(handler, ws, channels, sockets, "base64" in protocol),
                              daemon=True, name=f"kubeletapi-wsforward-in-{handler.client_address[1]}")
    reader.start()
    try:
        for forward in forwards:
            while forward.is_alive() and reader.is_alive():
                forward.join(0.5)
    finally:
        client_left = not reader.is_alive()
        for sock in sockets.values():
            podsockets.shut(sock)
        for forward in forwards:
            forward.join(5)
        for sock in sockets.values():
            if client_left:  # as in portforward: the pod must not stall sending to a half-closed peer
                podsockets.abort_on_close(sock)
            sock.close()
        handler.end_upgraded(channels.close, handler.connection, reader)
    return 101


def _from_pod(sock: socket.socket, channels: wsstreams.Channels, channel: int) -> None:
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            channels.send_data(channel, chunk)
    except OSError:
        return


def _to_pods(handler: Handler, ws, channels: wsstreams.Channels, sockets: dict[int, socket.socket],
             encoded: bool) -> None:
    for message, text in wsstreams.messages(handler, ws, channels):
        parts = wsstreams.split(message, encoded or text)
        if parts is None or parts[0] not in sockets or not parts[1]:
            continue
        try:
            sockets[parts[0]].sendall(parts[1])
        except OSError:
            podsockets.shut(sockets[parts[0]])
    for sock in sockets.values():  # the client left: every forward ends
        podsockets.shut(sock)


