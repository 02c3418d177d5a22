"""The kubelet API over real HTTPS: every endpoint, errors, streaming, limits, start and stop."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import BUSY, SLEEP, client_context

LINES = "".join(f"line {i}\n" for i in range(1, 11))


@pytest.fixture(scope="module")
def pods(backend):
    """ns1/web: 'app' printing ten lines and sleeping; 'busy' burning CPU. ns1/idle: one sleeping container."""
    backend.add_pod("ns1", "web", {
        "app": ["sh", "-c", f"printf '{LINES}'; sleep 60"],
        "busy": BUSY,
    })
    backend.add_pod("ns1", "idle", {"sleeper": SLEEP})
    time.sleep(0.3)  # let the printf land
    return backend


def test_healthz_is_open(serve, get, pods):
    server = serve(pods)
    status, headers, body = get(server, "/healthz")
    assert (status, body) == (200, b"ok")
    assert headers["Content-Type"].startswith("text/plain")


def test_pods_lists_the_backend_pods(serve, get, pods, admin_cert):
    server = serve(pods)
    status, headers, body = get(server, "/pods", cert=admin_cert)
    assert status == 200 and headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert document["kind"] == "PodList" and document["apiVersion"] == "v1"
    assert sorted(p["metadata"]["name"] for p in document["items"]) == ["idle", "web"]


def test_unknown_path_is_404_and_other_methods_405(serve, get, pods, admin_cert):
    server = serve(pods)
    assert get(server, "/nothing", cert=admin_cert)[0] == 404
    assert get(server, "/stats/other", cert=admin_cert)[0] == 404
    status, headers, _ = get(server, "/pods", cert=admin_cert, method="POST")
    assert status == 405 and headers["Allow"] == "GET"
    assert get(server, "/stats/summary", cert=admin_cert, method="DELETE")[0] == 405


def test_container_logs(serve, get, pods, admin_cert):
    server = serve(pods)
    status, headers, body = get(server, "/containerLogs/ns1/web/app", cert=admin_cert)
    assert status == 200 and headers["Transfer-Encoding"] == "chunked"
    assert body.decode() == LINES
    assert get(server, "/containerLogs/ns1/web/app?tailLines=2", cert=admin_cert)[2] == b"line 9\nline 10\n"
    assert get(server, "/containerLogs/ns1/web/app?tail=3&tailLines=1", cert=admin_cert)[2].count(b"\n") == 3
    assert get(server, "/containerLogs/ns1/web/app?tail=all", cert=admin_cert)[2].decode() == LINES
    assert get(server, "/containerLogs/ns1/web/app?limitBytes=5", cert=admin_cert)[2] == b"line "
    stamped = get(server, "/containerLogs/ns1/web/app?timestamps=true&tailLines=1", cert=admin_cert)[2].decode()
    stamp, _, text = stamped.partition(" ")
    assert text == "line 10\n" and stamp.endswith("Z") and "T" in stamp


def test_container_logs_errors(serve, get, pods, admin_cert):
    server = serve(pods)
    status, _, body = get(server, "/containerLogs/ns1/nope/app", cert=admin_cert)
    assert (status, body) == (404, b'pod "nope" not found in namespace "ns1" on this node')
    status, _, body = get(server, "/containerLogs/ns1/web/nope", cert=admin_cert)
    assert (status, body) == (404, b'container "nope" not found in pod "web"')
    status, _, body = get(server, "/containerLogs/ns1/web/app?previous=true", cert=admin_cert)
    assert status == 400 and b"previous terminated container" in body
    assert get(server, "/containerLogs/ns1/Web_Bad/app", cert=admin_cert)[0] == 400
    assert get(server, "/containerLogs/ns1/web", cert=admin_cert)[:3:2] == (400, b"Missing container name.")
    assert get(server, "/containerLogs/ns1/web/app/extra", cert=admin_cert)[0] == 404
    for query, status in (("tailLines=x", 400), ("sinceTime=yesterday", 400), ("tailLines=-1", 422),
                          ("limitBytes=0", 422), ("sinceSeconds=0", 422),
                          ("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z", 422)):
        assert get(server, f"/containerLogs/ns1/web/app?{query}", cert=admin_cert)[0] == status, query


def _open_stream(server, pki, cert, path):
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(pki, cert),
                                             timeout=10)
    connection.request("GET", path)
    return connection, connection.getresponse()


def test_follow_streams_until_the_run_ends(serve, backend, pki, admin_cert):
    backend.add_pod("ns2", "ticker", {"c": ["sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 0.2; done"]})
    server = serve(backend)
    started = time.monotonic()
    connection, response = _open_stream(server, pki, admin_cert, "/containerLogs/ns2/ticker/c?follow=true")
    try:
        first = response.read1(1024)
        assert first.startswith(b"tick 1\n") and b"tick 3" not in first  # flushed as it comes, not at the end
        assert time.monotonic() - started < 2
        rest = response.read()  # ends when the run ends (final chunk)
    finally:
        connection.close()
    assert (first + rest).decode() == "tick 1\ntick 2\ntick 3\n"


def test_a_client_that_leaves_ends_the_stream(serve, backend, pki, admin_cert):
    backend.add_pod("ns2", "forever", {"c": ["sh", "-c", "echo hello; sleep 60"]})
    server = serve(backend)
    connection, response = _open_stream(server, pki, admin_cert, "/containerLogs/ns2/forever/c?follow=1")
    assert response.read1(1024) == b"hello\n"
    assert server._streams and server.open_connections
    connection.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and (server._streams or server.open_connections):
        time.sleep(0.05)
    assert not server._streams, "the follow stream did not notice its client left"
    assert not server.open_connections, "the connection thread did not end"


def test_stop_ends_follow_streams_and_joins(serve, backend, pki, admin_cert):
    backend.add_pod("ns2", "forever2", {"c": ["sh", "-c", "echo hi; sleep 60"]})
    server = serve(backend)
    connection, response = _open_stream(server, pki, admin_cert, "/containerLogs/ns2/forever2/c?follow=true")
    assert response.read1(1024) == b"hi\n"
    port = server.port
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    assert not [t for t in threading.enumerate() if t.name.startswith("kubeletapi-")]
    with pytest.raises(http.client.IncompleteRead):  # the stream was cut, not ended cleanly
        response.read()
    connection.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_stats_summary(serve, get, pods, admin_cert):
    server = serve(pods)
    status, headers, body = get(server, "/stats/summary", cert=admin_cert)
    assert status == 200 and headers["Content-Type"] == "application/json"
    summary = json.loads(body)
    node = summary["node"]
    assert node["nodeName"] == "vk-test" and node["startTime"].endswith("Z")
    assert set(node["cpu"]) == {"time", "usageNanoCores", "usageCoreNanoSeconds"}
    assert {"time", "usageBytes", "workingSetBytes", "rssBytes", "availableBytes"} <= set(node["memory"])
    web = next(p for p in summary["pods"] if p["podRef"]["name"] == "web")
    assert web["podRef"]["namespace"] == "ns1" and web["podRef"]["uid"]
    assert sorted(c["name"] for c in web["containers"]) == ["app", "busy"]
    for container in web["containers"]:
        assert container["cpu"]["usageCoreNanoSeconds"] > 0
        assert container["memory"]["workingSetBytes"] > 0
    assert web["cpu"]["usageCoreNanoSeconds"] == sum(c["cpu"]["usageCoreNanoSeconds"] for c in web["containers"])
    assert web["process_stats"]["process_count"] >= 2


def test_scrapers_within_the_cache_window_share_one_measurement(serve, get, pods, admin_cert):
    server = serve(pods, stats_ttl=30.0)  # a window no loaded machine can overrun
    results = []
    threads = [threading.Thread(target=lambda: results.append(get(server, "/stats/summary", cert=admin_cert)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r[0] for r in results] == [200] * 8
    nodes = {json.dumps(json.loads(r[2])["node"]["cpu"], sort_keys=True) for r in results}
    assert len(nodes) == 1, "concurrent scrapers were measured separately"


def test_busy_container_cpu_moves_and_usage_nano_cores_follows(serve, get, pods, admin_cert):
    server = serve(pods, stats_ttl=0.0)

    def busy():
        summary = json.loads(get(server, "/stats/summary", cert=admin_cert)[2])
        web = next(p for p in summary["pods"] if p["podRef"]["name"] == "web")
        return next(c for c in web["containers"] if c["name"] == "busy")["cpu"]

    first = second = busy()
    deadline = time.monotonic() + 15  # the runtime measures in the background, every few seconds
    while time.monotonic() < deadline and second["usageCoreNanoSeconds"] - first["usageCoreNanoSeconds"] < 0.03e9:
        time.sleep(0.5)
        second = busy()
    assert second["usageCoreNanoSeconds"] - first["usageCoreNanoSeconds"] > 0.03e9  # it burns CPU
    assert second["usageNanoCores"] > 0.05e9  # the rate between two measurements, not a lifetime average


def test_metrics_resource_is_prometheus_text(serve, get, pods, admin_cert):
    server = serve(pods)
    status, headers, body = get(server, "/metrics/resource", cert=admin_cert)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {"container_cpu_usage_seconds", "container_memory_working_set_bytes", "container_start_time_seconds",
            "node_cpu_usage_seconds", "node_memory_working_set_bytes", "resource_scrape_error"} <= names


def test_own_metrics_count_requests(serve, get, pods, admin_cert):
    server = serve(pods)
    get(server, "/pods", cert=admin_cert)
    get(server, "/nothing", cert=admin_cert)
    status, _, body = get(server, "/metrics", cert=admin_cert)
    assert status == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    assert samples[("vkcmd_kubelet_api_requests_total", (("code", "200"), ("endpoint", "pods")))] == 1
    assert samples[("vkcmd_kubelet_api_requests_total", (("code", "404"), ("endpoint", "other")))] == 1
    assert samples[("vkcmd_pods", (("phase", "Running"),))] == 0


def test_keep_alive_serves_many_requests_on_one_connection(serve, pods, pki, admin_cert):
    server = serve(pods)
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(pki, admin_cert))
    try:
        for path in ("/healthz", "/pods", "/containerLogs/ns1/web/app?tailLines=1", "/healthz"):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
        assert response.getheader("Connection") != "close"
    finally:
        connection.close()


def test_idle_and_silent_clients_are_dropped(serve, pods):
    server = serve(pods, idle_timeout=0.5, handshake_timeout=0.5)
    silent = socket.create_connection(("127.0.0.1", server.port))  # never starts TLS
    silent.settimeout(3)
    started = time.monotonic()
    assert silent.recv(1) == b""  # closed by the server
    assert time.monotonic() - started < 2
    silent.close()


def test_connection_limit_refuses_only_when_every_connection_is_busy(serve, get, backend, pki, admin_cert):
    backend.add_pod("ns2", "chatty", {"c": ["sh", "-c", "echo up; sleep 60"]})
    server = serve(backend, max_connections=2)
    streams = [_open_stream(server, pki, admin_cert, "/containerLogs/ns2/chatty/c?follow=true") for _ in range(2)]
    for _connection, response in streams:
        assert response.read1(1024) == b"up\n"
    extra = socket.create_connection(("127.0.0.1", server.port))
    extra.settimeout(2)
    try:
        assert extra.recv(1) == b""  # both connections are busy streaming: refused at accept
        assert server.rejected_connections >= 1
    finally:
        extra.close()
        for connection, _response in streams:
            connection.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            if get(server, "/healthz")[0] == 200:
                break
        except (ssl.SSLError, OSError):
            time.sleep(0.1)
    assert get(server, "/healthz")[0] == 200  # slots are given back


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_client_certificate(serve, pods, pki, admin_cert):
    server = serve(pods)
    base = ["curl", "-sS", "--max-time", "10", "--cacert", pki.ca_cert]
    out = subprocess.run(base + ["--cert", admin_cert[0], "--key", admin_cert[1],
                                 f"https://127.0.0.1:{server.port}/healthz"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "ok", out.stderr
    out = subprocess.run(base + ["--cert", admin_cert[0], "--key", admin_cert[1], "-w", "%{http_code}", "-o",
                                 "/dev/null", f"https://127.0.0.1:{server.port}/stats/summary"],
                         capture_output=True, text=True)
    assert out.stdout == "200", out.stderr
    out = subprocess.run(base + ["-w", "%{http_code}", "-o", "/dev/null",
                                 f"https://127.0.0.1:{server.port}/pods"], capture_output=True, text=True)
    assert out.stdout == "401", out.stderr
    out = subprocess.run(base + ["--tlsv1.1", "--tls-max", "1.1", f"https://127.0.0.1:{server.port}/healthz"],
                         capture_output=True, text=True)
    assert out.returncode != 0  # TLS 1.2 at least


class LazyErrorBackend:
    """A backend whose log reader is a generator: its NotFound only comes with the first chunk."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def open_container_log(self, namespace, pod, container, options, stop):
        yield from self.real.open_container_log(namespace, pod, container, options, stop)


def test_a_lazily_raised_backend_error_still_gets_its_status(serve, get, pods, admin_cert):
    server = serve(LazyErrorBackend(pods))
    assert get(server, "/containerLogs/ns1/nope/app", cert=admin_cert)[:3:2] == (404, b'pod "nope" not found in namespace "ns1" on this node')
    assert get(server, "/containerLogs/ns1/web/app?tailLines=1", cert=admin_cert)[:3:2] == (200, b"line 10\n")
