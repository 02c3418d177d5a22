"""The anonymous-metrics opt-in (issue 15) over real HTTPS, and the exporter's documented names and labels."""

from __future__ import annotations

import http.client
import logging
import ssl
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from vkcmd.kubeletapi.metrics import Metrics


def _anonymous(server, path, method="GET", headers=None):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a scraper with insecureSkipVerify and no client certificate
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_off_by_default(serve, backend):
    server = serve(backend)
    for path in ("/metrics/resource", "/metrics", "/stats/summary"):
        assert _anonymous(server, path)[0] == 401, path


def test_opted_in_serves_the_metrics_paths_and_nothing_else(serve, backend, caplog):
    backend.add_pod("anon", "quiet", {"c": ["sleep", "60"]})
    with caplog.at_level(logging.WARNING, logger="vkcmd.kubeletapi"):
        server = serve(backend, anonymous_metrics=True)
    assert any("ANONYMOUS ACCESS" in r.getMessage() for r in caplog.records)  # loud at start-up
    status, body = _anonymous(server, "/metrics/resource")
    assert status == 200 and b"node_cpu_usage_seconds_total" in body
    assert _anonymous(server, "/stats/summary")[0] == 200
    assert _anonymous(server, "/metrics")[0] == 200
    for path in ("/containerLogs/anon/quiet/c", "/pods", "/exec/anon/quiet/c?command=true&output=1",
                 "/portForward/anon/quiet", "/attach/anon/quiet/c?output=1", "/metrics/resource/../../pods"):
        assert _anonymous(server, path)[0] in (401, 404), path
    assert _anonymous(server, "/exec/anon/quiet/c?command=true&output=1", method="POST",
                      headers={"Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "v4.channel.k8s.io"})[0] == 401
    assert _anonymous(server, "/metrics/resource", method="POST")[0] == 401
    # credentials that fail are refused, not downgraded to anonymous
    assert _anonymous(server, "/metrics/resource", headers={"Authorization": "Bearer wrong"})[0] == 401


#: The exporter's documented metrics (README "Metrics"): names, types and label names are a stable interface.
DOCUMENTED = {
    "vkcmd_pods": ("gauge", {"phase"}),
    "vkcmd_container_starts": ("counter", {"reason"}),
    "vkcmd_container_exits": ("counter", {"reason"}),
    "vkcmd_state_transitions": ("counter", {"machine", "from", "to"}),
    "vkcmd_api_requests": ("counter", {"verb", "code"}),
    "vkcmd_api_request_duration_seconds": ("histogram", {"verb"}),
    "vkcmd_pod_start_latency_seconds": ("histogram", set()),
    "vkcmd_kubelet_api_requests": ("counter", {"endpoint", "code"}),
}


def test_the_exporters_metric_names_and_labels_are_stable():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.container_started("Started")
    metrics.container_exited("Completed")
    metrics.observe_api_request("get", 200, 0.01)
    metrics.kubelet_request("metrics", 200)
    metrics.transitions.labels("pod", "a", "b").inc()
    metrics.pod_start_latency.observe(1.0)
    body = registry_text(registry)
    found = {}
    for family in text_string_to_metric_families(body):
        if family.name.endswith("_created"):
            continue  # prometheus_client's creation-time series, not part of the documented set
        labels = set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
        found[family.name] = (family.type, labels)
    assert found == DOCUMENTED
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert [name for name in DOCUMENTED if f"`{name}`" not in readme] == [], "README must document them"


def registry_text(registry) -> str:
    from prometheus_client.exposition import generate_latest

    return generate_latest(registry).decode()
