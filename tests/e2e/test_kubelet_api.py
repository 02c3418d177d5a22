"""The kubelet API of a real node: kubectl logs through the control plane, stats and metrics."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.e2e.node import Node, kubelet_client_context, pod_manifest, wait_for


@pytest.fixture(scope="module")
def node(control_plane, tmp_path_factory):
    running = Node(control_plane, tmp_path_factory.mktemp("vk"), name="vk-api").start()
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def fetch(control_plane, node, tmp_path_factory):
    """GET a kubelet API path as a system:masters client certificate."""
    context = kubelet_client_context(control_plane, tmp_path_factory.mktemp("cert"), "e2e-reader")

    def get(path: str) -> str:
        with urllib.request.urlopen(f"https://127.0.0.1:{node.port}{path}", context=context, timeout=10) as answer:
            return answer.read().decode()

    return get


def test_logs_follow_tail_timestamps(node, kubectl, namespace):
    node.create(pod_manifest("talker", ["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.4; done"]),
                namespace)
    node.wait_phase("talker", phases=("Running", "Succeeded"), namespace=namespace)
    followed = kubectl("logs", "-f", "-n", namespace, "talker", timeout=20, check=True).stdout
    assert followed == "line 1\nline 2\nline 3\n"
    node.wait_phase("talker", namespace=namespace)
    assert kubectl("logs", "--tail", "1", "-n", namespace, "talker", check=True).stdout == "line 3\n"
    stamped = kubectl("logs", "--timestamps", "-n", namespace, "talker", check=True).stdout.splitlines()
    assert len(stamped) == 3
    for line in stamped:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z line \d", line), line


def test_logs_previous_after_a_restart(node, kubectl, namespace):
    script = 'if [ -f ran ]; then echo "run 2"; sleep 1000; else touch ran; echo "run 1"; exit 1; fi'
    manifest = pod_manifest("twice", ["sh", "-c", script], restart="OnFailure")
    manifest["spec"]["volumes"] = [{"name": "s", "emptyDir": {}}]
    manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "s", "mountPath": "s"}]
    manifest["spec"]["containers"][0]["workingDir"] = "s"
    node.create(manifest, namespace)
    wait_for(lambda: kubectl("logs", "-n", namespace, "twice").stdout == "run 2\n", timeout=20, what="second run")
    assert kubectl("logs", "--previous", "-n", namespace, "twice", check=True).stdout == "run 1\n"
    node.delete("twice", namespace)
    node.wait_gone("twice", namespace)


def test_stats_and_metrics_reflect_running_pods(node, fetch, namespace):
    # a fixed amount of work (~1.2 s of CPU), not of wall time: on a loaded machine 3 s of wall time gave the
    # burner less than the 0.5 s of CPU waited for below, and it slept before reaching it
    burn = "i=0; while [ $i -lt 1500000 ]; do i=$((i+1)); done; sleep 1000"
    node.create(pod_manifest("burner", ["sh", "-c", burn]), namespace)
    node.wait_phase("burner", phases=("Running",), namespace=namespace)

    def pod_stats():
        summary = json.loads(fetch("/stats/summary"))
        return next((p for p in summary["pods"] if p["podRef"]["name"] == "burner"), None)

    stats = wait_for(lambda: (lambda p: p if p and p["containers"] and p["containers"][0]["cpu"].get(
        "usageCoreNanoSeconds", 0) > 5e8 else None)(pod_stats()), timeout=60, what="CPU usage of the burner")
    assert stats["containers"][0]["memory"]["workingSetBytes"] > 0
    text = fetch("/metrics/resource")
    assert re.search(r'container_cpu_usage_seconds_total\{container="c",pod="burner",namespace="%s"\} [0-9.e+-]+'
                     % namespace, text)
    own = fetch("/metrics")
    assert re.search(r"vkcmd_container_starts_total\{reason=\"Started\"\} [1-9]", own)
    assert re.search(r"vkcmd_pod_start_latency_seconds_count [1-9]", own)
    assert 'vkcmd_state_transitions_total{from="Staging",machine="container",to="Running"}' in own
    pods = json.loads(fetch("/pods"))
    assert any(p["metadata"]["name"] == "burner" for p in pods["items"])
    node.delete("burner", namespace)
    node.wait_gone("burner", namespace)
