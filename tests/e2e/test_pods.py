"""Pods as process groups on a real vkcmd node: exit codes, restarts, deletion, bad pods, deadlines."""

from __future__ import annotations

import pytest

from tests.e2e.node import Node, container_state, pod_manifest, wait_for


@pytest.fixture(scope="module")
def node(control_plane, tmp_path_factory):
    running = Node(control_plane, tmp_path_factory.mktemp("vk"), name="vk-pods").start()
    yield running
    assert running.stop() == 0, running.log()


@pytest.mark.parametrize("code, phase, reason", [(0, "Succeeded", "Completed"), (1, "Failed", "Error"),
                                                 (3, "Failed", "Error")])
def test_exit_codes_and_phases(node, namespace, code, phase, reason):
    node.create(pod_manifest("exit", ["sh", "-c", f"echo out; echo err >&2; exit {code}"]), namespace)
    pod = node.wait_phase("exit", namespace=namespace)
    terminated = container_state(pod)["state"]["terminated"]
    assert (pod["status"]["phase"], terminated["exitCode"], terminated["reason"]) == (phase, code, reason)
    assert terminated["finishedAt"] >= terminated["startedAt"]


def test_killed_by_signal_reports_128_plus_n(node, namespace):
    import sys

    kill_self = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    node.create(pod_manifest("sig", [sys.executable, "-c", kill_self]), namespace)
    terminated = container_state(node.wait_phase("sig", namespace=namespace))["state"]["terminated"]
    assert terminated["exitCode"] == 137


def test_command_not_found_terminates_with_127_and_a_message(node, namespace):
    node.create(pod_manifest("nocmd", ["no-such-command-vkcmd"]), namespace)
    pod = node.wait_phase("nocmd", namespace=namespace)
    terminated = container_state(pod)["state"]["terminated"]
    assert pod["status"]["phase"] == "Failed" and terminated["exitCode"] == 127
    stderr = (node.container_dir("nocmd", "c", namespace) / "stderr").read_text()
    assert "no-such-command-vkcmd" in stderr


def test_argv_is_not_resplit_and_env_expands(node, namespace):
    manifest = pod_manifest("argv", ["sh", "-c", 'printf "%s|" "$@"; echo "$GREETING"', "sh",
                                     "a b", "$(GREETING)", "$$(GREETING)"])
    manifest["spec"]["containers"][0]["env"] = [{"name": "GREETING", "value": "hi there"}]
    node.create(manifest, namespace)
    node.wait_phase("argv", namespace=namespace)
    out = (node.container_dir("argv", "c", namespace) / "stdout").read_text()
    assert out == "a b|hi there|$(GREETING)|hi there\n"


def test_on_failure_restarts_with_back_off_until_success(node, namespace):
    script = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]'
    manifest = pod_manifest("flaky", ["sh", "-c", script], restart="OnFailure")
    manifest["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "work"}]
    manifest["spec"]["containers"][0]["workingDir"] = "work"
    node.create(manifest, namespace)
    pod = node.wait_phase("flaky", phases=("Succeeded",), namespace=namespace, timeout=30)
    status = container_state(pod)
    assert status["restartCount"] == 2
    assert status["state"]["terminated"]["exitCode"] == 0
    assert status["lastState"]["terminated"]["exitCode"] == 1


def test_always_restarts_and_shows_crash_loop_back_off(node, namespace):
    node.create(pod_manifest("crash", ["sh", "-c", "exit 2"], restart="Always"), namespace)

    def backing_off():
        pod = node.pod("crash", namespace)
        status = container_state(pod) if pod else {}
        waiting = status.get("state", {}).get("waiting", {})
        return pod if status.get("restartCount", 0) >= 2 and waiting.get("reason") == "CrashLoopBackOff" else None

    pod = wait_for(backing_off, timeout=30, what="CrashLoopBackOff with restarts")
    assert pod["status"]["phase"] == "Running"
    assert container_state(pod)["lastState"]["terminated"]["exitCode"] == 2
    node.delete("crash", namespace)
    node.wait_gone("crash", namespace)


def test_deletion_kills_double_forked_processes(node, namespace):
    script = "(setsid sh -c 'sleep 1000' &) ; (sh -c 'sleep 1000 &' ) ; echo started; sleep 1000"
    node.create(pod_manifest("forky", ["sh", "-c", script]), namespace)
    pod = node.wait_phase("forky", phases=("Running",), namespace=namespace)
    uid = pod["metadata"]["uid"]
    wait_for(lambda: len([p for p in _processes_of(node, namespace, "forky")]) >= 4, what="forked processes")
    node.delete("forky", namespace)
    node.wait_gone("forky", namespace)
    assert not _processes_of(node, namespace, "forky")
    assert not (node.home / namespace / "forky").exists(), uid


def test_deletion_with_grace_lets_a_trapping_script_finish(node, namespace, tmp_path):
    script = "trap 'echo bye > out/said; exit 0' TERM; echo up; while :; do sleep 0.1; done"
    manifest = pod_manifest("polite", ["sh", "-c", script], terminationGracePeriodSeconds=10)
    manifest["spec"]["volumes"] = [{"name": "out", "hostPath": {"path": str(tmp_path)}}]
    manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "out", "mountPath": "out"}]
    node.create(manifest, namespace)
    node.wait_phase("polite", phases=("Running",), namespace=namespace)
    wait_for(lambda: (node.container_dir("polite", "c", namespace) / "stdout").read_text() == "up\n")
    node.delete("polite", namespace)
    node.wait_gone("polite", namespace, timeout=8)  # well inside the grace period: the trap ended it
    assert (tmp_path / "said").read_text() == "bye\n"
    assert tmp_path.exists()  # a hostPath is linked, never removed with the workspace


def test_missing_config_map_waits_then_recovers(node, namespace):
    manifest = pod_manifest("needs-cm", ["sh", "-c", "cat conf/key"])
    manifest["spec"]["volumes"] = [{"name": "conf", "configMap": {"name": "late"}}]
    manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "conf", "mountPath": "conf"}]
    node.create(manifest, namespace)

    def config_error():
        pod = node.pod("needs-cm", namespace)
        waiting = container_state(pod).get("state", {}).get("waiting", {}) if pod else {}
        return pod if waiting.get("reason") == "CreateContainerConfigError" else None

    pod = wait_for(config_error, what="CreateContainerConfigError")
    assert 'configmap "late" not found' in container_state(pod)["state"]["waiting"]["message"]
    assert pod["status"]["phase"] == "Pending"
    node.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}, "data": {"key": "value"}},
                namespace)
    pod = node.wait_phase("needs-cm", namespace=namespace)
    assert pod["status"]["phase"] == "Succeeded"
    assert (node.container_dir("needs-cm", "c", namespace) / "stdout").read_text() == "value"


def test_bad_pods_fail_alone(node, namespace):
    escape = pod_manifest("escape", ["true"])
    escape["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    escape["spec"]["containers"][0]["volumeMounts"] = [{"name": "v", "mountPath": "../../../../etc/x"}]
    node.create(escape, namespace)
    node.create(pod_manifest("fine", ["true"]), namespace)
    pod = wait_for(lambda: (lambda p: p if container_state(p).get("state", {}).get("waiting", {}).get("reason")
                            == "CreateContainerConfigError" else None)(node.pod("escape", namespace)),
                   what="escape refused")
    assert pod["status"]["phase"] == "Pending"
    assert node.wait_phase("fine", namespace=namespace)["status"]["phase"] == "Succeeded"
    assert node.ready()


def test_active_deadline_fails_the_pod(node, namespace):
    node.create(pod_manifest("slow", ["sleep", "100"], activeDeadlineSeconds=1), namespace)
    pod = node.wait_phase("slow", namespace=namespace, timeout=20)
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "DeadlineExceeded")
    assert not _processes_of(node, namespace, "slow")


def test_init_containers_run_in_order_first(node, namespace):
    manifest = pod_manifest("inits", ["sh", "-c", "cat /dev/null; cat ../order 2>/dev/null || cat order"])
    manifest["spec"]["volumes"] = [{"name": "shared", "emptyDir": {}}]
    mount = [{"name": "shared", "mountPath": "shared"}]
    manifest["spec"]["initContainers"] = [
        {"name": "one", "image": "none", "command": ["sh", "-c", "echo one >> shared/order"], "volumeMounts": mount},
        {"name": "two", "image": "none", "command": ["sh", "-c", "echo two >> shared/order"], "volumeMounts": mount},
    ]
    manifest["spec"]["containers"][0]["command"] = ["sh", "-c", "cat shared/order"]
    manifest["spec"]["containers"][0]["volumeMounts"] = mount
    node.create(manifest, namespace)
    pod = node.wait_phase("inits", namespace=namespace)
    assert pod["status"]["phase"] == "Succeeded"
    assert (node.container_dir("inits", "c", namespace) / "stdout").read_text() == "one\ntwo\n"
    assert [s["state"]["terminated"]["exitCode"] for s in pod["status"]["initContainerStatuses"]] == [0, 0]


def test_memory_limit_kills_with_oom_killed(node, namespace):
    hog = "import time; b = bytearray(300 * 1024 * 1024); time.sleep(30)"
    import sys
    manifest = pod_manifest("hog", [sys.executable, "-c", hog])
    manifest["spec"]["containers"][0]["resources"] = {"limits": {"memory": "64Mi"}}
    node.create(manifest, namespace)
    pod = node.wait_phase("hog", namespace=namespace, timeout=20)
    terminated = container_state(pod)["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)


def _processes_of(node, namespace, pod):
    """Live processes of the node's pods whose working directory is in the pod's workspace."""
    import os

    prefix = str(node.home / namespace / pod)
    found = []
    for pid in node.processes():
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(prefix):
                found.append(pid)
        except OSError:
            continue
    return found


def test_a_short_pod_life_costs_two_status_writes(node, namespace):
    """Pending (containers being created) is not written when Running follows at once: a short pod
    writes Running (or straight Succeeded) and Succeeded — the API sees no third write."""
    from vkcmd.kube.client import path

    pods = path(resource="pods", namespace=namespace)
    version = node.client.get(pods, limit=1)["metadata"]["resourceVersion"]
    stream = node.client.watch(pods, resource_version=version, timeout_seconds=60)
    node.create(pod_manifest("short", ["sh", "-c", "sleep 0.3"]), namespace)
    statuses = []
    try:
        for event in stream:
            status = event["object"].get("status") or {}
            if event["type"] == "MODIFIED" and status.get("containerStatuses") and \
                    (not statuses or statuses[-1] != status):
                statuses.append(status)
            if status.get("phase") == "Succeeded":
                break
    finally:
        stream.close()
    assert [s["phase"] for s in statuses] in (["Running", "Succeeded"], ["Succeeded"]), \
        [(s["phase"], s["containerStatuses"][0]["state"]) for s in statuses]
