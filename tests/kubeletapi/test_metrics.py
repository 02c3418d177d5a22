"""vkcmd's own metrics: what the helpers count, the fsm observer, and a real Prometheus scraping the exporter."""

from __future__ import annotations

import enum
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from fsm import Definition, Machine, Transition
from vkcmd.kubeletapi.metrics import Metrics, MetricsExporter, exposition

PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)


def samples(registry: CollectorRegistry) -> dict:
    body, _ = exposition(registry)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


class Light(enum.Enum):
    OFF = "Off"
    ON = "On"
    BROKEN = "Broken"


LIGHT = Definition("light", Light, Light.OFF, [
    Transition("switch_on", Light.OFF, Light.ON),
    Transition("switch_off", Light.ON, Light.OFF),
    Transition("break", (Light.OFF, Light.ON), Light.BROKEN),
], final=[Light.BROKEN])


def test_fsm_observer_counts_transitions_of_a_real_machine():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    machine = Machine(LIGHT, "l1", observers=[metrics.fsm_observer()])
    machine.fire("switch_on")
    machine.fire("switch_off")
    machine.fire("switch_on")
    machine.fire("break")
    got = samples(registry)
    assert got[("vkcmd_state_transitions_total", (("from", "Off"), ("machine", "light"), ("to", "On")))] == 2
    assert got[("vkcmd_state_transitions_total", (("from", "On"), ("machine", "light"), ("to", "Broken")))] == 1


def test_helpers_and_pod_phases():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.set_pod_phase_source(lambda: {"Running": 3, "Pending": 1})
    metrics.container_started()
    metrics.container_exited("Completed")
    metrics.container_exited("OOMKilled")
    metrics.observe_pod_start(0.04)
    with metrics.api_call("PATCH") as call:
        call.code = "200"

    class Conflict(Exception):
        status = 409

    with pytest.raises(Conflict), metrics.api_call("PUT"):
        raise Conflict()
    got = samples(registry)
    assert got[("vkcmd_pods", (("phase", "Running"),))] == 3
    assert got[("vkcmd_pods", (("phase", "Failed"),))] == 0
    assert got[("vkcmd_container_starts_total", (("reason", "Started"),))] == 1
    assert got[("vkcmd_container_exits_total", (("reason", "OOMKilled"),))] == 1
    assert got[("vkcmd_pod_start_latency_seconds_count", ())] == 1
    assert got[("vkcmd_pod_start_latency_seconds_bucket", (("le", "0.05"),))] == 1
    assert got[("vkcmd_api_requests_total", (("code", "409"), ("verb", "PUT")))] == 1
    assert got[("vkcmd_api_request_duration_seconds_count", (("verb", "PATCH"),))] == 1


def test_a_failing_phase_source_does_not_break_the_scrape():
    registry = CollectorRegistry()
    Metrics(registry).set_pod_phase_source(lambda: 1 / 0)
    assert samples(registry)[("vkcmd_pods", (("phase", "Running"),))] == 0


def test_exporter_serves_plain_http():
    registry = CollectorRegistry()
    Metrics(registry).container_started("Restarted")
    exporter = MetricsExporter(registry, 0, "127.0.0.1")
    exporter.start()
    exporter_port = exporter.port
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=5) as response:
            assert response.status == 200
            assert b'vkcmd_container_starts_total{reason="Restarted"} 1.0' in response.read()
        assert [t for t in threading.enumerate() if t.name == "metrics-exporter"]
    finally:
        exporter.stop()
    assert not [t for t in threading.enumerate() if t.name == "metrics-exporter"]
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{exporter_port}/metrics", timeout=2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus binary is not installed")
def test_a_real_prometheus_scrapes_the_exporter(tmp_path):
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.set_pod_phase_source(lambda: {"Running": 7})
    metrics.container_exited("Error")
    exporter = MetricsExporter(registry, 0, "127.0.0.1")
    exporter.start()
    port = _free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: vkcmd\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{exporter.port}']\n")
    log = open(tmp_path / "prometheus.log", "wb")
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        query = urllib.parse.urlencode({"query": 'vkcmd_pods{phase="Running"}'})
        deadline, result = time.monotonic() + 25, []
        while time.monotonic() < deadline and not result:
            time.sleep(0.5)
            assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{query}", timeout=2) as response:
                    answer = json.load(response)
            except OSError:
                continue
            assert answer["status"] == "success"
            result = answer["data"]["result"]
        assert result, "Prometheus never reported the metric:\n" + (tmp_path / "prometheus.log").read_text()[-2000:]
        assert result[0]["metric"]["job"] == "vkcmd" and result[0]["value"][1] == "7"
        query = urllib.parse.urlencode({"query": "vkcmd_container_exits_total"})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{query}", timeout=2) as response:
            exits = json.load(response)["data"]["result"]
        assert [(r["metric"]["reason"], r["value"][1]) for r in exits] == [("Error", "1")]
    finally:
        os.killpg(prometheus.pid, signal.SIGTERM)
        try:
            prometheus.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(prometheus.pid, signal.SIGKILL)
            prometheus.wait()
        log.close()
        exporter.stop()
