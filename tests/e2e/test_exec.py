"""kubectl exec into a real node's pods through the local control plane (SPDY through kubelite to the kubelet)."""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest

from tests.e2e.node import Node, pod_manifest, wait_for
from tools.procs import connects, free_port

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
    container["env"] = [{"name": "GREETING", "value": "hello from the spec"},
                        {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
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
    done = _exec(kubectl, namespace, shell_pod, "sh", "-c", 'echo "$GREETING/$MY_POD"; pwd; ls')
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "hello from the spec/shell"  # a value and a valueFrom, as the container has them
    container_cwd = os.readlink(f"/proc/{_pids_in(node.container_dir(shell_pod, 'c', namespace))[0]}/cwd")
    assert lines[1] == container_cwd and "work" in lines[2:]  # where the container runs, and what it made there


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


def test_exec_with_a_terminal_under_script(node, kubectl, namespace, shell_pod):
    inner = (f"{kubectl.binary} --kubeconfig {kubectl.kubeconfig} exec -it -n {namespace} {shell_pod} -- "
             "sh -c 'tty >/dev/null && echo on-a-tty; stty size; exit 4'")
    done = subprocess.run(["script", "-qec", f"stty cols 91 rows 27; {inner}", "/dev/null"], capture_output=True,
                          text=True, timeout=30, env={**os.environ, **SPDY}, stdin=subprocess.DEVNULL)
    assert "on-a-tty" in done.stdout, done.stdout + done.stderr
    assert "27 91" in done.stdout  # the terminal's size reached the pty (resize stream)
    assert done.returncode == 4


def test_kubectl_cp_in_and_out(node, kubectl, namespace, shell_pod, tmp_path):
    payload = os.urandom(10 << 20)
    source = tmp_path / "in.bin"
    source.write_bytes(payload)
    env = {**os.environ, **SPDY}
    base = [kubectl.binary, "--kubeconfig", kubectl.kubeconfig, "-n", namespace]
    copied = subprocess.run([*base, "cp", str(source), f"{shell_pod}:work/in.bin"], capture_output=True, text=True,
                            timeout=60, env=env)
    assert copied.returncode == 0, copied.stderr
    inside = node.container_dir(shell_pod, "c", namespace)
    digest = _exec(kubectl, namespace, shell_pod, "sha256sum", "work/in.bin").stdout.split()[0]
    assert digest == hashlib.sha256(payload).hexdigest()
    back = subprocess.run([*base, "cp", f"{shell_pod}:work/in.bin", str(tmp_path / "out.bin")], capture_output=True,
                          text=True, timeout=60, env=env)
    assert back.returncode == 0, back.stderr
    assert hashlib.sha256((tmp_path / "out.bin").read_bytes()).hexdigest() == digest
    del inside


def test_port_forward_to_a_pod_serving_http_with_two_parallel_requests(node, kubectl, namespace, tmp_path):
    pod_port, local_port = free_port(), free_port()
    serve = f"import http.server as h; h.ThreadingHTTPServer(('127.0.0.1', {pod_port}), h.SimpleHTTPRequestHandler)" \
            ".serve_forever()"
    manifest = pod_manifest("web", ["sh", "-c", "echo served-by-the-pod > index.html; "
                                                f"exec {sys.executable} -c \"{serve}\""])
    node.create(manifest, namespace)
    node.wait_phase("web", phases=("Running",), namespace=namespace)
    wait_for(lambda: connects(pod_port), 15, what="the pod serves")
    forward = subprocess.Popen([kubectl.binary, "--kubeconfig", kubectl.kubeconfig, "port-forward", "-n", namespace,
                                "pod/web", f"{local_port}:{pod_port}"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"})
    try:
        wait_for(lambda: connects(local_port), 15, what="kubectl listens")
        # a client that connects and leaves at once (kubectl ends the stream): the forward ends, as the kubelet's
        # does, and the pod's answer must not stall the session for the others
        socket.create_connection(("127.0.0.1", local_port), timeout=5).close()
        results = []

        def fetch():
            with urllib.request.urlopen(f"http://127.0.0.1:{local_port}/index.html", timeout=10) as answer:
                results.append(answer.read())

        threads = [threading.Thread(target=fetch) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    finally:
        forward.terminate()
        said = forward.communicate(timeout=10)
    assert results == [b"served-by-the-pod\n"] * 2, said


def test_attach_to_a_printing_container(node, kubectl, namespace):
    node.create(pod_manifest("printer", ["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo tick $i; echo warn $i >&2; "
                                                     "i=$((i+1)); sleep 0.05; done"]), namespace)
    node.wait_phase("printer", phases=("Running",), namespace=namespace)
    attached = subprocess.run([kubectl.binary, "--kubeconfig", kubectl.kubeconfig, "attach", "-n", namespace,
                               "printer"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **SPDY})
    assert attached.returncode == 0, attached.stderr
    ticks = [line for line in attached.stdout.splitlines() if line.startswith("tick ")]
    assert ticks and ticks[-1] == "tick 399"  # live output, to the container's end
    assert "tick 0" not in ticks  # attach shows what comes, not the past
    assert "warn 399" in attached.stderr


def test_kubectls_default_websocket_is_translated_to_spdy(node, kubectl, namespace, shell_pod):
    done = _exec(kubectl, namespace, shell_pod, "sh", "-c", "tr a-z A-Z; echo err >&2; exit 5", input="over ws\n",
                 env={"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "true"})
    assert (done.returncode, done.stdout, done.stderr) == (5, "OVER WS\n", "err\ncommand terminated with exit code 5\n") \
        or (done.returncode, done.stdout) == (5, "OVER WS\n"), done.stderr
    verbose = subprocess.run([kubectl.binary, "--kubeconfig", kubectl.kubeconfig, "-v", "7", "exec", "-n", namespace,
                              shell_pod, "--", "true"], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "true"})
    assert "The subprotocol is v5.channel.k8s.io" in verbose.stderr  # WebSocket, not the SPDY fallback


def _pids_in(container_dir) -> list[int]:
    """The container's process group (its pgid file), leader first."""
    pgid = int((container_dir / "pgid").read_text().split()[0])
    return [pgid]


def test_exec_needs_create_on_pods_exec(node, kubectl, control_plane, namespace, shell_pod, tmp_path, kube_client):
    from kubernetes import client as k8s

    reader = str(tmp_path / "reader.kubeconfig")
    control_plane.write_kubeconfig(reader, cn="pod-reader")
    rbac = k8s.RbacAuthorizationV1Api(kube_client)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "read-pods"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "read-pods"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                       "name": "read-pods"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "pod-reader"}]})
    denied = _exec(kubectl.with_kubeconfig(reader), namespace, shell_pod, "true")
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "exec"}, "rules": [
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "exec"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                  "name": "exec"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "pod-reader"}]})
    wait_for(lambda: _exec(kubectl.with_kubeconfig(reader), namespace, shell_pod, "true").returncode == 0, 10,
             what="exec allowed once pods/exec is granted")
