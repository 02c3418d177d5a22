"""``tools/demo`` as a new user runs it: the show, Ctrl-C, a hard kill, no kubectl, and nothing left behind.

Every demo run gets a unique ``DEMO_TEST_TAG`` in its environment; every process it starts
(kubelite, vkcmd, the pods' processes, which inherit vkcmd's environment) carries it, so
"nothing left behind" is checked in /proc for exactly this run, beside other tests' processes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.node import REPO

DEMO = REPO / "tools" / "demo"
RUN_TIMEOUT = 240  # a whole run takes ~30 s alone; generous for a shared 2-core machine


def tagged_processes(tag: str) -> dict[int, str]:
    """Live (non-zombie) processes whose environment carries ``DEMO_TEST_TAG=tag``: pid -> command line."""
    needle = f"DEMO_TEST_TAG={tag}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if state != "Z" and needle in environ:
            found[int(entry)] = cmdline + (" [VKCMD_RUN]" if any(e.startswith(b"VKCMD_RUN=") for e in environ)
                                           else "")
    return found


def assert_nothing_left(tag: str) -> None:
    deadline = time.monotonic() + 5
    while (left := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    kinds = {"vkcmd": [c for c in left.values() if "-m vkcmd" in c],
             "kubelite": [c for c in left.values() if "tools.kubelite" in c],
             "pod processes (VKCMD_RUN marker)": [c for c in left.values() if "[VKCMD_RUN]" in c]}
    assert not left, f"left behind: {kinds}, all: {left}"


def kill_tagged(tag: str) -> None:
    """Last-resort reaping for a failed test (never reached when the demo works)."""
    for pid in tagged_processes(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def path_without_kubectl(tmp_path: Path) -> str:
    """A PATH with every command of the current one except kubectl (symlinks in one directory)."""
    bin_dir = tmp_path / "bin-without-kubectl"
    bin_dir.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = os.path.join(directory, name)
            if name != "kubectl" and not (bin_dir / name).exists() and os.access(target, os.X_OK):
                (bin_dir / name).symlink_to(target)
    assert shutil.which("kubectl", path=str(bin_dir)) is None
    return str(bin_dir)


class DemoRun:
    """``tools/demo`` in its own session (as a terminal would run it), output collected line by line."""

    def __init__(self, scratch: Path, *args: str, path: str | None = None) -> None:
        self.tag = uuid.uuid4().hex
        env = {**os.environ, "DEMO_TEST_TAG": self.tag}
        if path is not None:
            env["PATH"] = path
        self.lines: list[str] = []
        self.proc = subprocess.Popen([str(DEMO), "--dir", str(scratch), *args], env=env, cwd=REPO,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, name="demo-output", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = RUN_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None:
                self.reader.join(5)
                raise AssertionError(f"demo exited {self.proc.returncode} before {text!r}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout} s:\n{self.output}")
            time.sleep(0.2)

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"demo still running after {timeout} s:\n{self.output}") from None
        self.reader.join(10)
        return code

    def reap(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        kill_tagged(self.tag)
        self.proc.stdout.close()


def assert_the_show(out: str) -> None:
    """What the demo must have shown: the node joined by bootstrap token as system:node:vk-demo, labelled by the
    operator, pods to Succeeded, a log, metrics, a clean stop."""
    assert re.search(r"^bootstrap token [a-z0-9]{6} \(groups system:bootstrappers:kubeadm:default-node-token, "
                     r"expires .*\): kubeconfig written to .*bootstrap.kubeconfig \(0600\)$", out, re.M), out
    assert re.search(r"^the node's own credentials: .*/home/\.vkcmd/vk-demo\.kubeconfig \(mode 600\), "
                     r"certificate CN=system:node:vk-demo,O=system:nodes$", out, re.M), out
    assert "operator step: examples/affinity-pod.yaml selects kubernetes.io/role=agent" in out
    assert re.search(r"^node/vk-demo labeled$", out, re.M), out
    assert re.search(r"^vk-demo\s+Ready\s+agent\s+.*\bcpu\s+Local\s+\d+\s*$", out, re.M), out  # jiriaf.* labels
    assert re.search(r"pods after .*: hello Succeeded, p1 Running, placed Running, (sidecar-demo \w+, )?ticker-\* 3x Running", out), out
    assert re.search(r"pods after .*: hello Succeeded, p1 Succeeded, placed Succeeded, (sidecar-demo \w+, )?ticker-\* 3x Running",
                     out), out
    assert "hello from hello on vk-demo, greeting=bonjour, home=" in out
    assert "this goes to stderr" in out
    assert "burned 2 workers for 10 s" in out
    top = re.search(r"^p1\s+(\d+)m\s+\d+Mi\s*$", out, re.M)  # kubectl top pods (metrics.k8s.io via kubelite)
    assert top and int(top.group(1)) > 0, out
    p1 = re.search(r"^p1\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+)\s*$", out, re.M)  # /stats/summary per pod
    assert p1 and float(p1.group(1)) > 0 and float(p1.group(2)) > 0 and int(p1.group(3)) >= 2, out
    assert re.search(r"^node vk-demo: cpu \d+\.\d+ cores, memory working set [1-9]\d* MiB", out, re.M), out
    cpu = re.search(r'container_cpu_usage_seconds_total\{container="c1",pod="p1",namespace="default"\} (\S+)', out)
    assert cpu and float(cpu.group(1)) > 0, out  # /metrics/resource
    assert re.search(r"^vkcmd exited with code 0 after", out, re.M), out
    assert re.search(r"^vk-demo\s+NotReady,SchedulingDisabled\s", out, re.M), out  # drained: cordoned
    assert "kubelite exited with code 0" in out
    assert "no process left behind" in out


def test_demo_once_with_kubectl(tmp_path):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (the Python-client path is tested below)")
    run = DemoRun(tmp_path / "demo", "--once")
    try:
        code = run.wait()
        out = run.output
        assert code == 0, out
        assert "$ kubectl get nodes -L jiriaf.nodetype,jiriaf.site,jiriaf.alivetime" in out
        assert "$ kubectl get pods -o wide" in out and "$ kubectl logs hello" in out
        assert "$ kubectl top nodes" in out and "$ kubectl top pods" in out
        assert re.search(r"^vk-demo\s+\d+m\s", out, re.M), out  # kubectl top nodes
        assert "python client" not in out
        assert_the_show(out)
        assert_nothing_left(run.tag)
        assert (tmp_path / "demo" / "vk-demo.log").read_text().count("logger=fsm.trace") > 10
    finally:
        run.reap()


def test_demo_without_kubectl_survives_a_hard_kill_and_stops_on_ctrl_c(tmp_path):
    scratch = tmp_path / "demo"
    path = path_without_kubectl(tmp_path)

    killed = DemoRun(scratch, path=path)
    try:
        killed.wait_for_line("press Ctrl-C to stop")
        killed.proc.kill()  # the demo itself only: kubelite, vkcmd and the ticker pods stay behind
        killed.proc.wait()
        orphans = tagged_processes(killed.tag)
        assert any("-m vkcmd" in c for c in orphans.values()), orphans
        assert any("[VKCMD_RUN]" in c for c in orphans.values()), orphans
    except BaseException:
        killed.reap()
        raise

    run = DemoRun(scratch, path=path)
    try:
        run.wait_for_line("press Ctrl-C to stop")
        assert_nothing_left(killed.tag)  # the second run stopped what the first one left
        os.killpg(run.proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
        code = run.wait()
        out = run.output
        assert code == 0, out
        assert re.search(r"^stopped \d+ process\(es\) left by an earlier demo run", out, re.M), out
        assert "kubectl not found on PATH" in out and "# (python client) pods" in out
        assert "$ kubectl" not in out
        assert "SIGINT: stopping" in out
        assert_the_show(out)
        assert_nothing_left(run.tag)
    finally:
        killed.reap()
        run.reap()
