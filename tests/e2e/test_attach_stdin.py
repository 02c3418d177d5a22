"""kubectl attach -i/-it into containers started with stdin: true (stdinOnce, tty), through the local control plane."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.e2e.node import Node, container_state, pod_manifest, wait_for
from tools.procs import connects

SPDY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}


@pytest.fixture(scope="module")
def node(control_plane, tmp_path_factory):
    running = Node(control_plane, tmp_path_factory.mktemp("vk"), name="vk-attach").start()
    yield running
    assert running.stop() == 0, running.log()


def _attach(kubectl, namespace, pod, *flags, env=SPDY):
    cmd = [kubectl.binary, "--kubeconfig", kubectl.kubeconfig, "--cache-dir", kubectl.cache_dir,
           "attach", *flags, "-n", namespace, pod]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **env})


def _detach(attached: subprocess.Popen) -> str:
    attached.terminate()  # kubectl leaves: its connection closes, as a user's Ctrl-C
    _, err = attached.communicate(timeout=15)
    return err.decode(errors="replace")


def _stdout(node, pod, namespace) -> str:
    return (node.container_dir(pod, "c", namespace) / "stdout").read_text(errors="replace")


def _leader_stdin(node, pod, namespace) -> str:
    pid = int((node.container_dir(pod, "c", namespace) / "pgid").read_text())
    return os.readlink(f"/proc/{pid}/fd/0")


def _running_cat(node, kubectl, namespace, name, **container):
    manifest = pod_manifest(name, ["cat"])
    manifest["spec"]["containers"][0].update(container)
    node.create(manifest, namespace)
    node.wait_phase(name, phases=("Running",), namespace=namespace)
    return name


def _send_and_see(node, kubectl, namespace, pod, line, *flags):
    attached = _attach(kubectl, namespace, pod, "-i", *flags)
    try:
        wait_for(lambda: attached.poll() is None and _stdin_open(attached, line), 15, what="attach up")
        wait_for(lambda: line in _stdout(node, pod, namespace), 15, what=f"{line!r} in the container's output")
    finally:
        err = _detach(attached)
    return err


def _stdin_open(attached, line) -> bool:
    """Write the line once (kubectl buffers it until its streams are up)."""
    if not getattr(attached, "_sent", False):
        attached.stdin.write(f"{line}\n".encode())
        attached.stdin.flush()
        attached._sent = True
    return True


def test_attach_stdin_reaches_a_cat_and_it_survives_detaches(node, kubectl, namespace):
    pod = _running_cat(node, kubectl, namespace, "catter", stdin=True)
    assert _leader_stdin(node, pod, namespace).startswith("pipe:")
    _send_and_see(node, kubectl, namespace, pod, "first line through attach")
    time.sleep(1)
    assert container_state(node.pod(pod, namespace)).get("state", {}).get("running"), "detach ended the container"
    _send_and_see(node, kubectl, namespace, pod, "second attach, same stdin")
    out = _stdout(node, pod, namespace)
    assert out.index("first line through attach") < out.index("second attach, same stdin")


def test_stdin_once_gives_eof_when_the_first_attach_detaches(node, kubectl, namespace):
    manifest = pod_manifest("once", ["sh", "-c", "cat; echo saw-eof"])
    manifest["spec"]["containers"][0].update(stdin=True, stdinOnce=True)
    node.create(manifest, namespace)
    node.wait_phase("once", phases=("Running",), namespace=namespace)
    _send_and_see(node, kubectl, namespace, "once", "only attach")
    node.wait_phase("once", phases=("Succeeded",), namespace=namespace)
    assert _stdout(node, "once", namespace).endswith("only attach\nsaw-eof\n")


def test_stdin_once_ends_with_the_clients_end_of_input(node, kubectl, namespace):
    manifest = pod_manifest("once-eof", ["sh", "-c", "cat; echo saw-eof"])
    manifest["spec"]["containers"][0].update(stdin=True, stdinOnce=True)
    node.create(manifest, namespace)
    node.wait_phase("once-eof", phases=("Running",), namespace=namespace)
    attached = _attach(kubectl, namespace, "once-eof", "-i")
    try:
        out, err = attached.communicate(b"piped then closed\n", timeout=30)  # kubectl ends when the container does
    finally:
        if attached.poll() is None:
            attached.kill()
            attached.wait()
    assert b"piped then closed\nsaw-eof\n" in out, err
    node.wait_phase("once-eof", phases=("Succeeded",), namespace=namespace)


def test_without_stdin_true_the_input_is_dropped_and_stdin_stays_dev_null(node, kubectl, namespace):
    manifest = pod_manifest("nostdin", ["sh", "-c", "echo started; exec sleep 1000"])
    node.create(manifest, namespace)
    node.wait_phase("nostdin", phases=("Running",), namespace=namespace)
    pod = "nostdin"
    assert _leader_stdin(node, pod, namespace) == "/dev/null"
    attached = _attach(kubectl, namespace, pod, "-i")
    attached.stdin.write(b"goes nowhere\n")
    attached.stdin.flush()
    time.sleep(2)
    assert attached.poll() is None  # attached (as containerd does: the input is dropped), not refused
    _detach(attached)
    assert "goes nowhere" not in _stdout(node, pod, namespace)
    assert container_state(node.pod(pod, namespace)).get("state", {}).get("running")


def test_attach_it_under_script_to_a_tty_container(node, kubectl, namespace):
    manifest = pod_manifest("term", ["sh", "-c", '[ -t 0 ] && echo stdin-is-a-tty; while read line; do '
                                                 'echo "read:$line"; done'])
    manifest["spec"]["containers"][0].update(stdin=True, tty=True)
    node.create(manifest, namespace)
    node.wait_phase("term", phases=("Running",), namespace=namespace)
    inner = f"{kubectl.binary} --kubeconfig {kubectl.kubeconfig} attach -it -n {namespace} term"
    attached = subprocess.Popen(["script", "-qec", inner, "/dev/null"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **SPDY})
    try:
        time.sleep(3)  # kubectl puts its terminal in raw mode, then sends what is typed
        attached.stdin.write(b"typed on a terminal\r")
        attached.stdin.flush()
        wait_for(lambda: "read:typed on a terminal" in _stdout(node, "term", namespace), 20,
                 what="the line read by the container")
    finally:
        attached.kill()
        attached.communicate(timeout=15)
    assert _stdout(node, "term", namespace).startswith("stdin-is-a-tty\n")
    assert _leader_stdin(node, "term", namespace).startswith("/dev/pts/")


def test_after_a_vkcmd_restart_a_recovered_containers_stdin_is_at_eof(control_plane, kubectl, namespace,
                                                                      tmp_path_factory):
    restarted = Node(control_plane, tmp_path_factory.mktemp("vk"), name="vk-attach-restart").start()
    try:
        manifest = pod_manifest("survivor", ["sh", "-c", "cat; echo stdin-closed; exec sleep 1000"],
                                node="vk-attach-restart")
        manifest["spec"]["containers"][0].update(stdin=True)
        restarted.create(manifest, namespace)
        restarted.wait_phase("survivor", phases=("Running",), namespace=namespace)
        _send_and_see(restarted, kubectl, namespace, "survivor", "before the restart")
        restarted.kill_hard()  # the write end lived in vkcmd: the container reads EOF, and keeps running
        wait_for(lambda: "stdin-closed" in _stdout(restarted, "survivor", namespace), 15, what="EOF seen")
        restarted.start()
        wait_for(lambda: connects(restarted.port), 20, what="the kubelet port back")
        attached = _attach(kubectl, namespace, "survivor", "-i")
        attached.stdin.write(b"after the restart\n")
        attached.stdin.flush()
        time.sleep(2)
        assert attached.poll() is None, attached.communicate()  # attach still works (output), input dropped
        _detach(attached)
        pod = restarted.pod("survivor", namespace)
        assert container_state(pod).get("state", {}).get("running") and container_state(pod)["restartCount"] == 0
    finally:
        assert restarted.stop() == 0, restarted.log()
