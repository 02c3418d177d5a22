"""httpGet, tcpSocket and grpc checks against real listening sockets, closed ports and a real gRPC server."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from tests.provider.grpc_health_server import serve
from vkcmd.probing import network_check, resolve_port


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web():
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, dict(self.headers)))
            routes = {"/ok": (200, None), "/created": (201, None), "/bad": (500, None), "/missing": (404, None),
                      "/moved": (302, "/ok"), "/away": (301, "http://example.invalid/ok"),
                      "/to-bad": (307, "/bad"), "/loop": (302, "/loop"), "/notmod": (304, None)}
            code, location = routes.get(self.path.split("?")[0], (404, None))
            self.send_response(code)
            if location:
                self.send_header("Location", location)
            body = b"hello"
            self.send_header("Content-Length", str(len(body)) if code != 304 else "0")
            self.end_headers()
            if code != 304:
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="test-web", daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("path, ok, says", [
    ("/ok", True, "hello"), ("/created", True, ""), ("/notmod", True, ""),
    ("/bad", False, "statuscode: 500"), ("/missing", False, "statuscode: 404"),
    ("/moved", True, "hello"),  # a same-host redirect is followed
    ("/to-bad", False, "statuscode: 500"),  # ... and its target decides
    ("/away", True, "Probe terminated redirects"),  # another host: success with a warning, not followed
    ("/loop", False, "redirects"),
])
def test_http_get(web, path, ok, says):
    port, seen = web
    result = network_check({"path": path, "port": port}, "httpGet", "127.0.0.1", [], 2)
    assert result.ok is ok and says in result.output
    assert bool(result.warning) is (path == "/away")  # success with a warning, as the kubelet
    assert all("example.invalid" not in p for p, _ in seen)


def test_http_get_by_port_name_with_headers_and_the_pod_ip_as_host(web):
    port, seen = web
    ports = [{"name": "web", "containerPort": port}]
    action = {"path": "/ok", "port": "web", "httpHeaders": [{"name": "X-Probe", "value": "yes"},
                                                               {"name": "Host", "value": "svc.local"}]}
    assert network_check(action, "httpGet", "127.0.0.1", ports, 2).ok
    headers = seen[-1][1]
    assert headers["X-Probe"] == "yes" and headers["Host"] == "svc.local"
    assert headers["User-Agent"].startswith("kube-probe/")


def test_http_get_on_a_closed_port_fails_and_a_silent_server_times_out():
    closed = free_port()
    result = network_check({"path": "/", "port": closed}, "httpGet", "127.0.0.1", [], 2)
    assert not result.ok and "connection refused" in result.output
    with socket.socket() as silent:  # accepts (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        result = network_check({"path": "/", "port": silent.getsockname()[1]}, "httpGet", "127.0.0.1", [], 0.5)
    assert not result.ok and result.timed_out


def test_tcp_socket_open_and_closed():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        assert network_check({"port": listening.getsockname()[1]}, "tcpSocket", "127.0.0.1", [], 2).ok
    result = network_check({"port": free_port()}, "tcpSocket", "127.0.0.1", [], 2)
    assert not result.ok and "refused" in result.output


def test_ports_by_name_and_bad_ports():
    assert resolve_port("http", [{"name": "http", "containerPort": 8080}]) == 8080
    assert resolve_port(80, []) == 80 and resolve_port("81", []) == 81
    for bad in ("nope", 0, 70000):
        with pytest.raises(ValueError):
            resolve_port(bad, [])
    result = network_check({"port": "nope"}, "tcpSocket", "127.0.0.1", [], 1)
    assert not result.ok and "unknown port name" in result.output


def test_grpc_health_check_with_service():
    server, port = serve(0, {"": 1, "db": 2})
    try:
        assert network_check({"port": port}, "grpc", "127.0.0.1", [], 5).ok
        sick = network_check({"port": port, "service": "db"}, "grpc", "127.0.0.1", [], 5)
        assert not sick.ok and "NOT_SERVING" in sick.output
        unknown = network_check({"port": port, "service": "other"}, "grpc", "127.0.0.1", [], 5)
        assert not unknown.ok and "NOT_FOUND" in unknown.output
    finally:
        server.stop(0).wait(5)
    down = network_check({"port": port}, "grpc", "127.0.0.1", [], 2)
    assert not down.ok
