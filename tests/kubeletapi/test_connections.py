"""The kubelet API's connection budget and request bounds, with real sockets (issue 11 items 5 and 6).

Idle unauthenticated connections must not lock authenticated callers out; the
request line and the header block are bounded like the Go kubelet's (1 MiB).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time

import psutil

from .conftest import client_context


def _https(server, pki, cert, timeout=5.0):
    return http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(pki, cert), timeout=timeout)


def _flood(server, count):
    sockets = []
    for _ in range(count):
        sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
    return sockets


def _close(sockets):
    for sock in sockets:
        sock.close()


def test_idle_raw_connections_do_not_lock_out_an_authenticated_client(serve, get, backend, pki, admin_cert):
    server = serve(backend)  # the shipped limits: 256 connections
    idle = _flood(server, 320)
    try:
        time.sleep(0.5)  # every one accepted and waiting for a TLS hello
        started = time.monotonic()
        status, _, body = get(server, "/pods", cert=admin_cert, timeout=5)
        assert status == 200 and b"PodList" in body
        assert time.monotonic() - started < 3
        # and a token caller, who authenticates only with its first request
        token_server = serve(backend, review_token=lambda t: {"username": "alice"} if t == "good" else None)
        more = _flood(token_server, 320)
        try:
            time.sleep(0.5)
            assert get(token_server, "/pods", token="good", timeout=5)[0] == 200
        finally:
            _close(more)
    finally:
        _close(idle)


def test_the_oldest_unauthenticated_connections_are_closed_first(serve, backend):
    server = serve(backend, max_unauthenticated=8)
    first = _flood(server, 8)
    time.sleep(0.3)
    later = _flood(server, 4)
    try:
        for sock in first[:4]:
            sock.settimeout(3)
            assert sock.recv(1) == b""  # the oldest four were closed to make room
        for sock in later:
            sock.settimeout(0.3)
            try:
                assert sock.recv(1) != b"", "a newer connection was closed before an older one"
            except TimeoutError:
                pass  # still open: good
    finally:
        _close(first + later)


def test_an_authenticated_keep_alive_connection_survives_a_flood(serve, backend, pki, admin_cert):
    server = serve(backend, max_connections=64, max_unauthenticated=16)
    connection = _https(server, pki, admin_cert)
    try:
        connection.request("GET", "/pods")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        idle = _flood(server, 200)
        try:
            time.sleep(0.5)
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"ok")
        finally:
            _close(idle)
    finally:
        connection.close()


def test_a_client_that_stops_after_the_handshake_is_dropped_after_the_header_timeout(serve, backend, pki):
    server = serve(backend, header_timeout=0.5)
    context = ssl.create_default_context(cafile=pki.ca_cert)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never ends the header block
        started = time.monotonic()
        assert tls.recv(1) == b""
        assert time.monotonic() - started < 3
    finally:
        tls.close()


def _send_head(server, pki, cert, head: bytes) -> bytes:
    """Send ``head`` over TLS and return what the server answers before closing (b"" if nothing)."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    tls = client_context(pki, cert).wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        try:
            tls.sendall(head)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the server stopped reading: what it answered is still readable below
        answer = b""
        try:
            while len(answer) < 65536:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                answer += chunk
                if b"\r\n\r\n" in answer and b"Connection: close" not in answer:
                    break
        except (ConnectionResetError, ssl.SSLError, TimeoutError):
            pass
        return answer
    finally:
        tls.close()


def _big_head(total: int) -> bytes:
    line = b"X-Filler-%d: " + b"a" * 60000 + b"\r\n"
    headers = b"".join(line % i for i in range(total // 60000 + 1))
    return b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"


def test_a_header_block_over_1_mib_is_refused_with_431(serve, backend, pki, admin_cert):
    server = serve(backend)
    answer = _send_head(server, pki, admin_cert, _big_head(2 << 20))
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b" 200 " not in answer.split(b"\r\n", 1)[0]
    # just under the bound is still served
    assert _send_head(server, pki, admin_cert, _big_head(900_000)).startswith(b"HTTP/1.1 200")


def test_a_request_line_over_64_kib_is_refused_with_414(serve, backend, pki, admin_cert):
    server = serve(backend)
    answer = _send_head(server, pki, admin_cert, b"GET /pods?" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 414"), answer[:200]


def test_huge_headers_do_not_grow_memory(serve, backend, pki, admin_cert):
    server = serve(backend)
    head = _big_head(5_700_000)
    _send_head(server, pki, admin_cert, head)  # warm up the buffers once
    before = psutil.Process().memory_info().rss
    for _ in range(20):
        answer = _send_head(server, pki, admin_cert, head)
        assert not answer.startswith(b"HTTP/1.1 200")
    grown = psutil.Process().memory_info().rss - before
    assert grown < 32 << 20, f"RSS grew by {grown >> 20} MiB"
