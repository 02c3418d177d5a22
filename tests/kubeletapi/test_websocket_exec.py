"""/exec over the WebSocket channel subprotocols an API server passes through to the kubelet (wsproto client)."""

from __future__ import annotations

import base64
import json
import socket

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, RejectConnection, Request,
                            TextMessage)

from .conftest import client_context


def _exec_ws(server, pki, cert, path, protocol, send=()):
    """Run one exec; {channel: bytes} of what came back (text channels decoded), in order of arrival."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    sock = client_context(pki, cert).wrap_socket(raw, server_hostname="127.0.0.1")
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host="127.0.0.1", target=path, subprotocols=[protocol])))
    got: dict[int, bytes] = {}
    accepted = None
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    accepted = event.subprotocol
                    for message in send:
                        sock.sendall(ws.send(message))
                elif isinstance(event, RejectConnection):
                    return None, {}
                elif isinstance(event, (BytesMessage, TextMessage)):
                    body = event.data
                    if isinstance(event, TextMessage):
                        channel, body = int(body[0]), base64.b64decode(body[1:])
                    else:
                        channel, body = body[0], bytes(body[1:])
                    got[channel] = got.get(channel, b"") + body
                elif isinstance(event, CloseConnection):
                    sock.sendall(ws.send(event.response()))
                    return accepted, got
    finally:
        sock.close()
    return accepted, got


@pytest.fixture(scope="module")
def shell(backend):
    backend.add_pod("ws", "shell", {"c": ["sleep", "60"]})
    return backend


COMMAND = "/exec/ws/shell/c?command=sh&command=-c&command=echo+out%3B+echo+err+%3E%262%3B+exit+3&output=1&error=1"


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", "v5.channel.k8s.io"])
def test_v4_and_v5_carry_the_exit_status(serve, shell, pki, admin_cert, protocol):
    server = serve(shell)
    accepted, got = _exec_ws(server, pki, admin_cert, COMMAND, protocol)
    assert accepted == protocol
    assert got[1] == b"out\n" and got[2] == b"err\n"
    status = json.loads(got[3])
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"][0]["message"] == "3"


@pytest.mark.parametrize("protocol", ["channel.k8s.io", "base64.channel.k8s.io"])
def test_the_oldest_protocols_say_the_error_in_text(serve, shell, pki, admin_cert, protocol):
    server = serve(shell)
    accepted, got = _exec_ws(server, pki, admin_cert, COMMAND, protocol)
    assert accepted == protocol and got[1] == b"out\n"
    assert b"exit code: 3" in got[3]


def test_v5_stdin_and_its_close(serve, shell, pki, admin_cert):
    server = serve(shell)
    path = "/exec/ws/shell/c?command=tr&command=a-z&command=A-Z&input=1&output=1"
    accepted, got = _exec_ws(server, pki, admin_cert, path, "v5.channel.k8s.io",
                             send=[BytesMessage(b"\x00typed in\n"), BytesMessage(b"\xff\x00")])
    assert accepted == "v5.channel.k8s.io"
    assert got[1] == b"TYPED IN\n" and json.loads(got[3])["status"] == "Success"


def test_an_unknown_subprotocol_is_refused_and_anonymous_is_401(serve, shell, pki, admin_cert):
    server = serve(shell)
    assert _exec_ws(server, pki, admin_cert, COMMAND, "v9.example")[0] is None
    assert _exec_ws(server, pki, None, COMMAND, "v4.channel.k8s.io")[0] is None
