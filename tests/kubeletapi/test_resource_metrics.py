"""/metrics/resource against metrics-server v0.7's decoder rules, with real processes burning real CPU.

``decode`` restates what ``pkg/scraper/client/resource/decode.go`` does with the
text: series matched by name prefix, labels found by ``container="``, ``pod="``
and ``namespace="``, timestamps read as milliseconds, and a node or a whole pod
dropped when a CPU or memory value is zero.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vkcmd.kubeletapi import resource_metrics
from vkcmd.kubeletapi.backend import ContainerUsage, NodeUsage, PodUsage, UsageSnapshot
from vkcmd.kubeletapi.summary import CpuRates, compute

from .conftest import BUSY, SLEEP

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{[^}]*\})? (?P<value>\S+)(?: (?P<ts>-?\d+))?$")


def _label(labels: str, name: str) -> str:
    start = labels.index(f'{name}="') + len(name) + 2
    return labels[start:labels.index('"', start)]


def decode(text: str, default_ms: int) -> tuple[dict | None, dict]:
    """(node point or None, {(ns, pod): {container: point}}) as metrics-server keeps them."""
    node: dict = {}
    pods: dict = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"unparsable line: {line!r}"
        name, labels, value = match["name"], match["labels"] or "", float(match["value"])
        ms = int(match["ts"]) if match["ts"] else default_ms
        if name == "node_cpu_usage_seconds_total":
            node.update(cpu_ns=int(value * 1e9), ms=ms)
        elif name == "node_memory_working_set_bytes":
            node.update(memory=int(value), ms=ms)
        elif name.startswith("container_") and name in ("container_cpu_usage_seconds_total",
                                                         "container_memory_working_set_bytes",
                                                         "container_start_time_seconds"):
            key = (_label(labels, "namespace"), _label(labels, "pod"))
            point = pods.setdefault(key, {}).setdefault(_label(labels, "container"), {})
            if name == "container_cpu_usage_seconds_total":
                point.update(cpu_ns=int(value * 1e9), ms=ms)
            elif name == "container_memory_working_set_bytes":
                point.update(memory=int(value), ms=ms)
            else:
                point["start"] = value
    kept_node = node if node.get("ms") and node.get("cpu_ns") and node.get("memory") else None
    kept = {key: containers for key, containers in pods.items()
            if all(c.get("cpu_ns") and c.get("memory") for c in containers.values())}
    return kept_node, kept


def _snapshot(at: float, cpu: float) -> UsageSnapshot:
    node = NodeUsage(1_600_000_000.0, 1234.5, 3_000_000_000, 2_000_000_000, 4_000_000_000)
    return UsageSnapshot(at, node, (
        PodUsage("kube-system", "coredns-1", "u1", at - 60, (
            ContainerUsage("coredns", "run-1", at - 50, cpu, 12_533_760, 12_000_000, 13_000_000),)),
        PodUsage("default", "empty", "u2", at - 5, ()),
    ))


def test_render_matches_the_kubelet_format():
    at = 1_633_253_812.125
    text = resource_metrics.render(compute("n", _snapshot(at, 4.710169), CpuRates()))
    lines = text.splitlines()
    assert ('container_cpu_usage_seconds_total{container="coredns",pod="coredns-1",namespace="kube-system"} '
            "4.710169 1633253812125") in lines
    assert ('container_memory_working_set_bytes{container="coredns",pod="coredns-1",namespace="kube-system"} '
            "12533760 1633253812125") in lines
    assert 'container_start_time_seconds{container="coredns",pod="coredns-1",namespace="kube-system"} ' \
           "1633253762.125" in lines
    assert "node_cpu_usage_seconds_total 1234.5 1633253812125" in lines
    assert "node_memory_working_set_bytes 3000000000 1633253812125" in lines
    assert 'pod_cpu_usage_seconds_total{pod="coredns-1",namespace="kube-system"} 4.710169 1633253812125' in lines
    assert "resource_scrape_error 0" in lines and "scrape_error 0" in lines
    assert "# TYPE container_cpu_usage_seconds_total counter" in lines
    assert "# TYPE node_memory_working_set_bytes gauge" in lines
    assert not any("empty" in line for line in lines)  # a pod without live containers has no series
    for line in lines:  # every sample of a family comes right after its HELP and TYPE
        if line.startswith("# TYPE "):
            assert lines[lines.index(line) - 1].startswith("# HELP " + line.split()[2] + " ")
    node, pods = decode(text, default_ms=0)
    assert node == {"cpu_ns": 1_234_500_000_000, "memory": 3_000_000_000, "ms": 1_633_253_812_125}
    assert pods == {("kube-system", "coredns-1"): {"coredns": {
        "cpu_ns": 4_710_169_000, "memory": 12_533_760, "ms": 1_633_253_812_125, "start": 1_633_253_762.125}}}


def test_render_error_is_only_the_error_gauges():
    families = {f.name: f for f in text_string_to_metric_families(resource_metrics.render_error())}
    assert set(families) == {"resource_scrape_error", "scrape_error"}
    assert families["resource_scrape_error"].samples[0].value == 1


def test_a_zero_cpu_container_is_not_reported_as_zero():
    stats = compute("n", _snapshot(1_700_000_000.0, 0.0), CpuRates())
    _, pods = decode(resource_metrics.render(stats), default_ms=0)
    assert ("kube-system", "coredns-1") in pods  # metrics-server would have dropped the pod for a 0


@pytest.fixture(scope="module")
def burning(backend):
    backend.add_pod("metrics", "burner", {"busy": BUSY, "idle": SLEEP})
    backend.add_pod("metrics", "quiet", {"sleeper": SLEEP})
    time.sleep(0.1)
    return backend


def test_scraped_from_real_processes(serve, get, burning, admin_cert):
    server = serve(burning, stats_ttl=0.0)
    first_text = get(server, "/metrics/resource", cert=admin_cert)[2].decode()
    first_at_ms = int(time.time() * 1000)

    def busy_cpu(text):
        return decode(text, default_ms=0)[1].get(("metrics", "burner"), {}).get("busy", {}).get("cpu_ns", 0)

    second_text, deadline = first_text, time.monotonic() + 15  # the runtime measures every few seconds
    while time.monotonic() < deadline and busy_cpu(second_text) - busy_cpu(first_text) <= 0.03e9:
        time.sleep(0.5)
        second_text = get(server, "/metrics/resource", cert=admin_cert)[2].decode()

    for text in (first_text, second_text):
        list(text_string_to_metric_families(text))  # a real Prometheus text parser accepts it
        for line in text.splitlines():
            if line.startswith("container_"):
                labels = line[line.index("{") + 1:line.index("}")]
                assert [pair.split("=")[0] for pair in labels.split(",")] == ["container", "pod", "namespace"]
    first_node, first = decode(first_text, default_ms=0)
    second_node, second = decode(second_text, default_ms=0)
    assert first_node and second_node
    assert abs(first_node["ms"] - first_at_ms) < 5000  # milliseconds, not seconds
    assert second_node["cpu_ns"] >= first_node["cpu_ns"]
    for key in (("metrics", "burner"), ("metrics", "quiet")):
        assert key in first and key in second, f"metrics-server would drop {key}"
        for name, point in second[key].items():
            assert point["cpu_ns"] > 0 and point["memory"] > 0 and point["start"] > 1.6e9
            assert point["cpu_ns"] >= first[key][name]["cpu_ns"], f"{key} {name}: cpu went down"
    burned = second[("metrics", "burner")]["busy"]["cpu_ns"] - first[("metrics", "burner")]["busy"]["cpu_ns"]
    assert burned > 0.03e9  # the busy loop's CPU moves with the wall clock (even on a loaded machine)
    idle = second[("metrics", "burner")]["idle"]["cpu_ns"] - first[("metrics", "burner")]["idle"]["cpu_ns"]
    assert idle < burned


def test_summary_and_resource_metrics_agree(serve, get, burning, admin_cert):
    server = serve(burning, stats_ttl=30.0)  # both answers come from the same measurement
    summary = json.loads(get(server, "/stats/summary", cert=admin_cert)[2])
    _, pods = decode(get(server, "/metrics/resource", cert=admin_cert)[2].decode(), default_ms=0)
    for pod in summary["pods"]:
        key = (pod["podRef"]["namespace"], pod["podRef"]["name"])
        for container in pod["containers"]:
            point = pods[key][container["name"]]
            assert point["cpu_ns"] == pytest.approx(container["cpu"]["usageCoreNanoSeconds"], rel=1e-9, abs=1000)
            assert point["memory"] == container["memory"]["workingSetBytes"]
