"""kubectl exec into a real node's pods through the local control plane (SPDY through kubelite to the kubelet)."""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess

import pytest

from tests.e2e.node import Node, pod_manifest, wait_for

SPDY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}


@pytest.fixture(scope="module")
def node(control_plane, tmp_path_factory):
    running = Node(control_plane, tmp_path_factory.mktemp("vk"), name="vk-exec").start()
    yield running
    assert running.stop() == 0, running.log()


def _exec(kubectl, namespace, pod, *command, input=None, env=SPDY, timeout=30):
    options = list(command[:2]) if command[:1] == ("-c",) else []
    command = command[len(options):]
    cmd = [kubectl.binary, "--kubeconfig", kubectl.kubeconfig, "--cache-dir", kubectl.cache_dir,
           "exec", *(["-i"] if input is not None else []), *options, "-n", namespace, pod, "--", *command]
    return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


@pytest.fixture
def shell_pod(node, namespace):
    manifest = pod_manifest("shell", ["sh", "-c", "mkdir -p work && sleep 1000"])
    container = manifest["spec"]["containers"][0]
    container["env"] = [{"name": "GREETING", "value": "hello from the spec"}]
    node.create(manifest, namespace)
    node.wait_phase("shell", phases=("Running",), namespace=namespace)
    return "shell"


def test_exec_output_exit_codes_and_stderr(node, kubectl, namespace, shell_pod):
    done = _exec(kubectl, namespace, shell_pod, "sh", "-c", "echo out; echo err >&2")
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\n", "err\n")
    assert _exec(kubectl, namespace, shell_pod, "sh", "-c", "exit 3").returncode == 3
    missing = _exec(kubectl, namespace, shell_pod, "no-such-command")
    assert missing.returncode == 127, missing.stderr
    assert _exec(kubectl, namespace, shell_pod, "./work").returncode == 126  # a directory is not executable


def test_exec_sees_the_containers_env_and_cwd(node, kubectl, namespace, shell_pod):
    done = _exec(kubectl, namespace, shell_pod, "sh", "-c", 'echo "$GREETING"; pwd; ls')
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "hello from the spec"
    assert lines[1] == str(node.container_dir(shell_pod, "c", namespace).parent.parent) or "work" in lines[2:]


def test_exec_with_stdin_piped(node, kubectl, namespace, shell_pod):
    done = _exec(kubectl, namespace, shell_pod, "sh", "-c", "tr a-z A-Z; echo end", input="piped in\n")
    assert (done.returncode, done.stdout) == (0, "PIPED IN\nend\n"), done.stderr


def test_kubectl_default_websocket_falls_back_or_is_served(node, kubectl, namespace, shell_pod):
    done = _exec(kubectl, namespace, shell_pod, "echo", "default transport", env={})
    assert (done.returncode, done.stdout) == (0, "default transport\n"), done.stderr


def test_exec_into_a_finished_container_is_refused_by_the_kubelet(node, kubectl, namespace):
    manifest = pod_manifest("half", ["sleep", "1000"])
    manifest["spec"]["containers"].append({"name": "done", "image": "none", "command": ["true"]})
    node.create(manifest, namespace)
    wait_for(lambda: "terminated" in _state(node, "half", "done", namespace), 15, what="the container ended")
    done = _exec(kubectl, namespace, "half", "-c", "done", "true")
    assert done.returncode != 0
    assert 'container not found ("done")' in done.stderr, done.stderr
    completed = pod_manifest("finished", ["true"])
    node.create(completed, namespace)
    node.wait_phase("finished", namespace=namespace)
    assert "completed pod" in _exec(kubectl, namespace, "finished", "true").stderr  # kubectl's own check


def test_anonymous_exec_on_the_kubelet_port_is_401(node):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", node.port, context=context, timeout=10)
    try:
        connection.request("POST", "/exec/default/any/c?command=true&output=1",
                           headers={"Upgrade": "SPDY/3.1", "Connection": "Upgrade",
                                    "X-Stream-Protocol-Version": "v4.channel.k8s.io"})
        assert connection.getresponse().status == 401
    finally:
        connection.close()


def _state(node, pod, container, namespace):
    for status in (node.pod(pod, namespace) or {}).get("status", {}).get("containerStatuses", []):
        if status["name"] == container:
            return status.get("state", {})
    return {}


def test_an_execd_sleep_ends_with_its_pod(node, kubectl, namespace):
    node.create(pod_manifest("host", ["sleep", "1000"]), namespace)
    node.wait_phase("host", phases=("Running",), namespace=namespace)
    cmd = [kubectl.binary, "--kubeconfig", kubectl.kubeconfig, "exec", "-n", namespace, "host", "--",
           "sh", "-c", "exec sleep 4321"]
    background = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, **SPDY})
    try:
        wait_for(lambda: _sleeps(), 15, what="the exec'd sleep runs")
        node.delete("host", namespace)
        node.wait_gone("host", namespace)
        wait_for(lambda: not _sleeps(), 20, what="the exec'd sleep is gone")
    finally:
        background.kill()
        background.wait()


def _sleeps() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if handle.read() == b"sleep\x004321\x00":
                        found.append(int(entry))
            except OSError:
                pass
    return found
