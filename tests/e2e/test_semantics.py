"""Kubernetes pod semantics on a real node: probes of every kind (httpGet, tcpSocket and grpc against
servers the pods run), termination messages read by kubectl, workingDir."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from tests.e2e.node import Node, container_state, pod_manifest, wait_for

GRPC_SERVER = str(Path(__file__).resolve().parents[1] / "provider" / "grpc_health_server.py")


@pytest.fixture(scope="module")
def node(control_plane, tmp_path_factory):
    running = Node(control_plane, tmp_path_factory.mktemp("vk"), name="vk-semantics").start()
    yield running
    assert running.stop() == 0, running.log()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod or {}).get("status", {}).get(
        "conditions") or [])


def events(kube_client, namespace, name):
    from kubernetes import client

    items = client.CoreV1Api(kube_client).list_namespaced_event(namespace).items
    return [(e.reason, e.message) for e in items if e.involved_object.name == name]


def probed(name, command, probe_kind, probe, ports=None):
    manifest = pod_manifest(name, command, restart="Always")
    container = manifest["spec"]["containers"][0]
    container[f"{probe_kind}Probe"] = {"periodSeconds": 1, "timeoutSeconds": 2, **probe}
    if ports:
        container["ports"] = ports
    return manifest


def test_http_get_readiness_follows_a_real_server_and_fails_on_a_closed_port(node, namespace, kube_client):
    port, closed = free_port(), free_port()
    serve = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    node.create(probed("web", serve, "readiness", {"httpGet": {"path": "/", "port": "http"}},
                       ports=[{"name": "http", "containerPort": port}]), namespace)
    node.create(probed("noweb", ["sleep", "300"], "readiness",
                       {"httpGet": {"path": "/healthz", "port": closed}, "failureThreshold": 1}), namespace)
    wait_for(lambda: ready(node.pod("web", namespace)), 30, what="web Ready by its httpGet probe")
    conditions = {c["type"]: c["status"] for c in node.pod("web", namespace)["status"]["conditions"]}
    assert conditions["PodReadyToStartContainers"] == "True" and "DisruptionTarget" not in conditions
    wait_for(lambda: any(r == "Unhealthy" and "Readiness probe failed" in m and "refused" in m
                         for r, m in events(kube_client, namespace, "noweb")), 30, what="an Unhealthy event")
    pod = node.pod("noweb", namespace)
    assert pod["status"]["phase"] == "Running" and not ready(pod)
    assert container_state(pod)["ready"] is False
    node.delete("web", namespace, grace=0)
    node.delete("noweb", namespace, grace=0)


def test_tcp_liveness_on_a_closed_port_restarts_the_container(node, namespace, kube_client):
    node.create(probed("deaf", ["sleep", "300"], "liveness", {"tcpSocket": {"port": free_port()},
                                                              "failureThreshold": 2}), namespace)
    wait_for(lambda: (container_state(node.pod("deaf", namespace) or {"status": {}}) or {}).get("restartCount", 0)
             >= 1, 40, what="a restart by the liveness probe")
    said = events(kube_client, namespace, "deaf")
    assert any(r == "Killing" and "failed liveness probe" in m for r, m in said)
    node.delete("deaf", namespace, grace=0)


def test_grpc_readiness_against_a_health_server_the_pod_runs(node, namespace, kube_client):
    port = free_port()
    serving = probed("grpc", [sys.executable, GRPC_SERVER, str(port), "=1", "db=2"], "readiness",
                     {"grpc": {"port": port}})
    sick = probed("grpcsick", [sys.executable, GRPC_SERVER, str(free_port()), "=1", "db=2"], "readiness",
                  {"grpc": {"port": 0, "service": "db"}})
    sick_port = int(sick["spec"]["containers"][0]["command"][2])
    sick["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = sick_port
    node.create(serving, namespace)
    node.create(sick, namespace)
    wait_for(lambda: ready(node.pod("grpc", namespace)), 40, what="Ready by its gRPC health check")
    wait_for(lambda: any(r == "Unhealthy" and "NOT_SERVING" in m for r, m in events(kube_client, namespace,
                                                                                  "grpcsick")), 40,
             what="an Unhealthy event: the db service is NOT_SERVING")
    assert not ready(node.pod("grpcsick", namespace))
    node.delete("grpc", namespace, grace=0)
    node.delete("grpcsick", namespace, grace=0)


def test_termination_messages_from_the_file_and_from_the_logs(node, namespace, kubectl):
    # /dev/termination-log is re-rooted: the container writes it under its directory, which vkcmd prepares
    node.create(pod_manifest("said", ["sh", "-c", "echo 'all done: 4 left' > dev/termination-log; exit 4"]),
                namespace)
    fallback = pod_manifest("tail", ["sh", "-c", "for n in $(seq 1 100); do echo line $n; done; exit 3"])
    fallback["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    node.create(fallback, namespace)
    for name in ("said", "tail"):
        node.wait_phase(name, namespace=namespace)
    jsonpath = "-o=jsonpath={.status.containerStatuses[0].state.terminated.message}"
    said = kubectl("get", "pod", "said", "-n", namespace, jsonpath, check=True).stdout
    assert said.strip() == "all done: 4 left"
    tail = kubectl("get", "pod", "tail", "-n", namespace, jsonpath, check=True).stdout.splitlines()
    assert tail[-1] == "line 100" and len(tail) == 80


def test_working_dir_is_re_rooted_created_and_never_outside(node, namespace):
    manifest = pod_manifest("wd2", ["sh", "-c", "pwd"])
    manifest["spec"]["containers"][0]["workingDir"] = "/data/run"
    node.create(manifest, namespace)
    escape = pod_manifest("wd3", ["true"])
    escape["spec"]["containers"][0]["workingDir"] = "/data/../../.."
    node.create(escape, namespace)
    node.wait_phase("wd2", namespace=namespace)
    directory = node.container_dir("wd2", "c", namespace)
    assert (directory / "stdout").read_text().strip() == str(directory / "data" / "run")
    wait_for(lambda: (container_state(node.pod("wd3", namespace) or {"status": {}}) or {}).get("state", {})
             .get("waiting", {}).get("reason") == "CreateContainerConfigError", 20,
             what="a workingDir with .. refused with a reason")
    assert "workingDir" in container_state(node.pod("wd3", namespace))["state"]["waiting"]["message"]
    node.delete("wd3", namespace, grace=0)


def test_a_native_sidecar_starts_first_runs_beside_the_app_and_stops_after_it(node, namespace):
    manifest = pod_manifest("sidecar", ["sh", "-c", "test -e ../side/ready && sleep 2 && echo main done"])
    manifest["spec"]["initContainers"] = [
        {"name": "side", "image": "none", "restartPolicy": "Always",
         "command": ["sh", "-c", "trap 'echo stopped > stopped; exit 0' TERM; sleep 1; touch ready; "
                                 "while :; do sleep 0.2; done"],
         "startupProbe": {"exec": {"command": ["test", "-e", "ready"]}, "periodSeconds": 1,
                          "failureThreshold": 30},
         "readinessProbe": {"exec": {"command": ["test", "-e", "ready"]}, "periodSeconds": 1}},
        {"name": "after", "image": "none", "command": ["test", "-e", "../side/ready"]},
    ]
    node.create(manifest, namespace)
    wait_for(lambda: (node.pod("sidecar", namespace) or {}).get("status", {}).get("phase") == "Running"
             and ready(node.pod("sidecar", namespace)), 30, what="Running and Ready with its sidecar")
    pod = node.wait_phase("sidecar", namespace=namespace, timeout=60)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    statuses = {s["name"]: s for s in pod["status"]["initContainerStatuses"]}
    assert statuses["after"]["state"]["terminated"]["exitCode"] == 0  # it ran after the sidecar's start
    assert "terminated" in statuses["side"]["state"]  # stopped once the main container was done
    assert (node.container_dir("sidecar", "side", namespace) / "stopped").read_text() == "stopped\n"


def test_post_start_and_pre_stop_hooks_run_in_order_and_a_failing_post_start_kills(node, namespace, kube_client,
                                                                                  tmp_path):
    import time

    out = str(tmp_path)  # the evidence outlives the pods' workspaces

    def hooked(name, lifecycle):
        body = (f"trap 'test -e {out}/{name}.prestop && echo after-prestop > {out}/{name}.term; "
                f"date +%s.%N > {out}/{name}.term-at; exit 0' TERM; while :; do sleep 0.2; done")
        manifest = pod_manifest(name, ["sh", "-c", body], terminationGracePeriodSeconds=20)
        manifest["spec"]["containers"][0]["lifecycle"] = lifecycle
        return manifest

    node.create(hooked("hooked", {
        "postStart": {"exec": {"command": ["sh", "-c", f"echo started > {out}/hooked.poststart"]}},
        "preStop": {"exec": {"command": ["sh", "-c", f"sleep 1; echo stopping > {out}/hooked.prestop"]}},
    }), namespace)
    node.create(hooked("slept", {"preStop": {"sleep": {"seconds": 2}}}), namespace)
    failing = pod_manifest("badhook", ["sleep", "300"], restart="Always")
    failing["spec"]["containers"][0]["lifecycle"] = {"postStart": {"exec": {"command": ["sh", "-c", "exit 7"]}}}
    node.create(failing, namespace)

    wait_for(lambda: (tmp_path / "hooked.poststart").exists(), 20, what="the postStart hook's file")
    for name in ("hooked", "slept"):
        wait_for(lambda n=name: (container_state(node.pod(n, namespace) or {"status": {}}) or {}).get("started"),
                 20, what=f"{name} started")
    asked = time.time()
    node.delete("hooked", namespace)
    node.delete("slept", namespace)
    node.wait_gone("hooked", namespace, timeout=30)
    node.wait_gone("slept", namespace, timeout=30)
    assert (tmp_path / "hooked.term").read_text() == "after-prestop\n"  # SIGTERM only after the preStop hook
    assert float((tmp_path / "slept.term-at").read_text()) - asked >= 1.5  # the sleep action held the SIGTERM
    wait_for(lambda: any(r == "FailedPostStartHook" for r, _ in events(kube_client, namespace, "badhook")), 20,
             what="a FailedPostStartHook event")
    wait_for(lambda: (container_state(node.pod("badhook", namespace)) or {}).get("restartCount", 0) >= 1, 40,
             what="the container killed and restarted after its failed postStart")
    node.delete("badhook", namespace, grace=0)


def test_a_liveness_kill_runs_the_pre_stop_hook_first(node, namespace, tmp_path):
    out = str(tmp_path)
    body = (f"trap 'test -e {out}/prestop && echo after-prestop >> {out}/term; exit 0' TERM; "
            "while :; do sleep 0.2; done")
    manifest = probed("unlive", ["sh", "-c", body], "liveness",
                      {"exec": {"command": ["false"]}, "failureThreshold": 1})
    manifest["spec"]["containers"][0]["lifecycle"] = {
        "preStop": {"exec": {"command": ["sh", "-c", f"echo ran > {out}/prestop"]}}}
    node.create(manifest, namespace)
    wait_for(lambda: (tmp_path / "term").exists(), 40, what="the container's SIGTERM after its preStop")
    assert (tmp_path / "term").read_text().splitlines()[0] == "after-prestop"
    node.delete("unlive", namespace, grace=0)
