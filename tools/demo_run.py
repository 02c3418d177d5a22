"""The demo behind ``tools/demo``: kubelite + one vkcmd node + the example pods, shown with kubectl.

Run by ``tools/demo`` after ``tools/bootstrap.sh``; not part of the installed package. Everything it
starts runs in its own session and carries ``VKCMD_DEMO=<scratch dir>`` in its environment (so does
every pod process, which inherits vkcmd's environment); it is stopped in order on Ctrl-C, SIGTERM or
SIGHUP, or at once with ``--once``: vkcmd first (SIGTERM: it drains), then kubelite. Whatever a
previous run left (killed hard) is found by that marker and stopped at start.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make the tools package importable
    sys.path.insert(0, str(REPO))

from tools.demo_procs import MARKER, marked_processes, signal_pid, stop_leftovers, wait_gone  # noqa: E402
from tools.procs import free_port  # noqa: E402
from tools.demo_show import (Cluster, DemoError, KubeletApi, Progress, Stop, phase, phase_line, ready,  # noqa: E402
                             rel, say, short_name, show_metrics, step)

NODE = "vk-demo"
STRESS_ARGS = ('args: ["30", "2"]', 'args: ["10", "2"]')  # the demo runs p1 for 10 s, not 30



class Demo:
    def __init__(self, scratch: Path, once: bool) -> None:
        self.scratch = scratch
        self.once = once
        self.kubelite: subprocess.Popen | None = None
        self.vkcmd: subprocess.Popen | None = None
        self.cluster: Cluster | None = None
        self.vk_log = scratch / f"{NODE}.log"
        self.kubelite_log = scratch / "kubelite.log"
        self.home = scratch / "home"
        self.stopping = False
        self.interrupts = 0

    # signals: Ctrl-C, SIGTERM, SIGHUP all mean "stop"; a second one while stopping hurries vkcmd

    def on_signal(self, signum, _frame) -> None:
        self.interrupts += 1
        if not self.stopping:
            raise Stop(signal.Signals(signum).name)
        if self.vkcmd is not None and self.vkcmd.poll() is None:
            say("  (again: vkcmd skips the remaining grace periods)")
            self.vkcmd.send_signal(signal.SIGTERM)

    def child_env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, MARKER: str(self.scratch), "PYTHONUNBUFFERED": "1", **extra}

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.on_signal)
        code = 0
        try:
            self.prepare()
            self.start()
            self.show()
            if not self.once:
                self.wait_for_ctrl_c()
        except Stop as stop:
            self.stopping = True
            say(f"\n{stop}: stopping")
        except DemoError as error:
            self.stopping = True
            say(f"\ndemo: {error}")
            code = 1
        finally:
            self.stopping = True
            code = self.stop() or code
        return code

    def prepare(self) -> None:
        left = stop_leftovers(self.scratch)
        if left:
            say(f"stopped {left} process(es) left by an earlier demo run in {rel(self.scratch)}/")
        if self.scratch.exists():
            shutil.rmtree(self.scratch)
        self.home.mkdir(parents=True)
        (self.scratch / ".gitignore").write_text("*\n")
        kubectl = shutil.which("kubectl")
        say(f"vkcmd demo: scratch dir {rel(self.scratch)}/ (wiped at each start), vkcmd's log in {rel(self.vk_log)}")
        if kubectl is None:
            say("kubectl not found on PATH: showing the cluster with the Python kubernetes client instead")
        self._kubectl = kubectl

    def start(self) -> None:
        step("1/5 control plane: kubelite, the bundled test/demo API server (a real cluster in production)")
        kl_dir = self.scratch / "kubelite"
        with open(self.kubelite_log, "wb") as log:
            self.kubelite = subprocess.Popen(
                [sys.executable, "-m", "tools.kubelite", "--dir", str(kl_dir)], cwd=REPO, env=self.child_env(),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True, text=True)
        line = read_line(self.kubelite, timeout=60)
        match = re.match(r"kubelite ready (\S+) kubeconfig=(\S+)", line or "")
        if not match:
            raise DemoError(f"kubelite did not start; see {rel(self.kubelite_log)}")
        kubeconfig = Path(match.group(2))
        say(f"kubelite at {match.group(1)}; admin kubeconfig {rel(kubeconfig)} (the operator's, never given to the node)")
        self.cluster = Cluster(kubeconfig, self.scratch, self._kubectl)

        step("2/5 node: joins with a bootstrap token only, as kubeadm join does, and runs as system:node:" + NODE)
        bootstrap = self.make_bootstrap_token(kubeconfig)
        node_kubeconfig = self.node_kubeconfig = self.home / ".vkcmd" / f"{NODE}.kubeconfig"
        say(f"$ python -m vkcmd --nodename {NODE} --provider mock --klog.v 3 --bootstrap-kubeconfig {rel(bootstrap)}")
        port = free_port()
        env = self.child_env(KUBECONFIG=str(node_kubeconfig), NODENAME=NODE, JIRIAF_WALLTIME="3600",
                             JIRIAF_NODETYPE="cpu", JIRIAF_SITE="Local", VKUBELET_POD_IP="127.0.0.1",
                             KUBELET_PORT=str(port), HOME=str(self.home), VK_WORKSPACE_ROOT=str(self.home))
        say(f"NODENAME={NODE} JIRIAF_WALLTIME=3600 JIRIAF_NODETYPE=cpu JIRIAF_SITE=Local "
            f"VKUBELET_POD_IP=127.0.0.1 KUBELET_PORT={port}")
        say(f"KUBECONFIG={rel(node_kubeconfig)} (does not exist yet: vkcmd writes it once its CSR is issued)")
        say(f"HOME=VK_WORKSPACE_ROOT={rel(self.home)} (pod workspaces: {rel(self.home)}/<namespace>/<pod>/)")
        with open(self.vk_log, "wb") as log:
            self.vkcmd = subprocess.Popen(
                [sys.executable, "-m", "vkcmd", "--nodename", NODE, "--provider", "mock", "--klog.v", "3",
                 "--bootstrap-kubeconfig", str(bootstrap)],
                cwd=self.home, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        started = time.monotonic()
        self.wait(lambda: self.node_ready(), 60, "node Ready", lambda: ("  waiting for the node to be Ready", 0))
        say(f"node {NODE} Ready after {time.monotonic() - started:.1f} s (the loopback warning in its log is "
            "expected here)")
        self.show_identity(node_kubeconfig)
        say("operator step: examples/affinity-pod.yaml selects kubernetes.io/role=agent, a label NodeRestriction "
            "forbids a node to set on itself; the operator sets it with the admin kubeconfig:")
        self.cluster.label_node(NODE, "kubernetes.io/role", "agent")
        self.cluster.show_nodes()
        self.kubelet = KubeletApi(kubeconfig, self.scratch, port,
                                  self.home / ".vkcmd" / NODE / "kubelet-serving.crt")

    def make_bootstrap_token(self, kubeconfig: Path) -> Path:
        """The operator's step: ``python -m tools.kubelite token create`` (kubeadm token create's counterpart)."""
        bootstrap = self.scratch / "bootstrap.kubeconfig"
        command = [sys.executable, "-m", "tools.kubelite", "token", "create", "--kubeconfig", str(kubeconfig),
                   "--ttl", "1h", "--kubeconfig-out", str(bootstrap)]
        say(f"$ python -m tools.kubelite token create --ttl 1h --kubeconfig-out {rel(bootstrap)}")
        proc = subprocess.run(command, cwd=REPO, env=self.child_env(), capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        sys.stdout.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise DemoError(f"making a bootstrap token failed with exit code {proc.returncode}")
        return bootstrap

    def show_identity(self, node_kubeconfig: Path) -> None:
        """Who the node is now: the subject of the certificate it got by CSR, and the file's mode."""
        from vkcmd.kube.bootstrap import client_certificate

        cert = client_certificate(str(node_kubeconfig))
        subject = ",".join([f"CN={n}" for n in cert.common_names] + [f"O={o}" for o in cert.organizations]) \
            if cert is not None else "(no client certificate)"
        mode = oct(node_kubeconfig.stat().st_mode & 0o777)[2:]
        say(f"the node's own credentials: {rel(node_kubeconfig)} (mode {mode}), certificate {subject}")
        if self._kubectl:
            self.cluster.kubectl("--kubeconfig", str(node_kubeconfig), "auth", "whoami")

    def node_ready(self) -> bool:
        self.check_alive()
        node = self.cluster.node(NODE)
        return bool(node) and any(c["type"] == "Ready" and c["status"] == "True"
                                  for c in node.get("status", {}).get("conditions", []))

    def check_alive(self) -> None:
        if self.vkcmd is not None and self.vkcmd.poll() is not None:
            raise DemoError(f"vkcmd exited with code {self.vkcmd.returncode}; last lines of {rel(self.vk_log)}:\n"
                            + tail(self.vk_log))
        if self.kubelite is not None and self.kubelite.poll() is not None:
            raise DemoError(f"kubelite exited with code {self.kubelite.returncode}; see {rel(self.kubelite_log)}")

    def wait(self, done: Callable[[], object], timeout: float, what: str,
             line: Callable[[], tuple[str, object]]) -> None:
        """Poll ``done`` until true, keeping one progress line (text, key) up to date; the last state stays shown."""
        progress = Progress()
        deadline = time.monotonic() + timeout
        try:
            while True:
                finished = done()
                progress.update(*line())
                if finished:
                    return
                if time.monotonic() > deadline:
                    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}; "
                                    f"vkcmd's log: {rel(self.vk_log)}")
                time.sleep(0.25)
        finally:
            progress.done()

    def pods_line(self, started: float) -> tuple[str, str]:
        phases = phase_line(self.cluster.pods())
        return f"  pods after {time.monotonic() - started:4.1f} s: {phases}", phases

    def show(self) -> None:
        step("3/5 pods: the examples in examples/")
        examples = self.scratch / "examples"
        examples.mkdir()
        for source in sorted((REPO / "examples").glob("*.yaml")):
            text = source.read_text()
            if source.name == "stress-pod.yaml":
                text = text.replace(*STRESS_ARGS)
            (examples / source.name).write_text(text)
        say(f"(copied to {rel(examples)}/; p1 of stress-pod.yaml shortened for the demo: {STRESS_ARGS[1]} "
            "burns 2 CPUs for 10 s instead of 30)")
        self.cluster.apply(examples)
        started = time.monotonic()

        def all_started() -> bool:
            self.check_alive()
            pods = {p["metadata"]["name"]: p for p in self.cluster.pods()}
            ticker = [p for p in pods.values() if short_name(p) == "ticker-*" and ready(p)]
            return phase(pods.get("hello", {})) == "Succeeded" and len(ticker) == 3 and all(
                phase(pods.get(n, {})) in ("Running", "Succeeded") for n in ("p1", "placed"))

        self.wait(all_started, 60, "the example pods to start", lambda: self.pods_line(started))
        self.cluster.show_pods()

        step("4/5 logs: stdout and stderr of the hello pod's script")
        self.cluster.show_logs("hello")

        step("5/5 metrics: kubectl top (metrics.k8s.io, served by kubelite from the node's /metrics/resource "
             "as metrics-server would), then the kubelet API itself with the admin client certificate")

        def p1_measured() -> bool:
            self.check_alive()
            p1 = self.cluster.pod_metrics().get("p1")
            return bool(p1) and all(c["usage"]["cpu"] != "0n" for c in p1["containers"])

        self.wait(p1_measured, 30, "p1 in metrics.k8s.io", lambda: ("  waiting for the first two scrapes", ""))
        self.cluster.show_top()
        show_metrics(self.kubelet)

        say("\nwaiting for p1 (10 s of CPU burn) and placed (sleep 20) to finish:")

        def finished() -> bool:
            self.check_alive()
            pods = {p["metadata"]["name"]: p for p in self.cluster.pods()}
            if any(phase(pods.get(n, {})) == "Failed" for n in ("p1", "placed")):
                raise DemoError("a pod failed: " + phase_line(list(pods.values())))
            return all(phase(pods.get(n, {})) == "Succeeded" for n in ("p1", "placed"))

        self.wait(finished, 60, "p1 and placed to succeed", lambda: self.pods_line(started))
        self.cluster.show_pods()
        self.cluster.show_logs("p1")

    def wait_for_ctrl_c(self) -> None:
        kubeconfig = self.cluster.kubeconfig
        say(f"\nThe node keeps running (the ticker Deployment too). In another terminal, try:\n"
            f"  export KUBECONFIG={kubeconfig}\n"
            f"  kubectl describe pod p1; kubectl logs -f deploy/ticker; kubectl scale deploy ticker --replicas=5\n"
            f"  kubectl --kubeconfig {self.node_kubeconfig} auth whoami   # the node's own identity\n"
            f"  grep fsm.trace {self.vk_log}      # every state transition, one line each\n"
            f"  ls {self.home}/default/hello/containers/main/   # pgid, stdout, stderr, scripts/")
        say("press Ctrl-C to stop")
        while True:
            time.sleep(1)
            self.check_alive()

    def stop(self) -> int:
        say("\n== stopping: SIGTERM to vkcmd (it drains: pods end, node cordoned), then kubelite")
        code = 0
        if self.vkcmd is not None:
            started = time.monotonic()
            if self.vkcmd.poll() is None:
                self.vkcmd.send_signal(signal.SIGTERM)
            try:
                self.vkcmd.wait(90)
            except subprocess.TimeoutExpired:
                say(f"vkcmd did not exit within 90 s; killing it (see {rel(self.vk_log)})")
                self.vkcmd.kill()
                self.vkcmd.wait()
            rc = self.vkcmd.returncode
            say(f"vkcmd exited with code {rc} after {time.monotonic() - started:.1f} s")
            if rc != 0:
                code = 1
            if self.cluster is not None and self.kubelite is not None and self.kubelite.poll() is None:
                try:
                    self.cluster.show_nodes()
                except Exception as error:  # noqa: BLE001 - showing the node is a nicety at this point
                    say(f"(could not show the node: {error})")
        if self.cluster is not None:
            self.cluster.close()
        if self.kubelite is not None:
            if self.kubelite.poll() is None:
                self.kubelite.send_signal(signal.SIGTERM)
            try:
                self.kubelite.wait(30)
            except subprocess.TimeoutExpired:
                self.kubelite.kill()
                self.kubelite.wait()
            if self.kubelite.stdout is not None:
                self.kubelite.stdout.close()
            say(f"kubelite exited with code {self.kubelite.returncode}")
        left = marked_processes(self.scratch)
        if left:
            say(f"killing {len(left)} leftover process(es): {left}")
            for pid in left:
                signal_pid(pid, signal.SIGKILL)
            wait_gone(left, 5)
            code = 1
        else:
            say("no process left behind")
        say(f"logs kept: {rel(self.vk_log)} (vkcmd), {rel(self.kubelite_log)} (kubelite)")
        return code


def read_line(proc: subprocess.Popen, timeout: float) -> str | None:
    """The first line ``proc`` prints on stdout, or None if it exits or ``timeout`` passes first."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), name="demo-read-ready",
                              daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else None


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/demo", description=(
        "Start the bundled control plane (kubelite) and one vkcmd node, run the example pods, show the node, "
        "pods, logs and metrics, then wait for Ctrl-C and stop everything."))
    parser.add_argument("--once", action="store_true", help="stop right after the show instead of waiting for Ctrl-C")
    parser.add_argument("--dir", default=os.environ.get("VKCMD_DEMO_DIR") or str(REPO / ".demo"),
                        help="scratch dir, wiped at start (default: .demo/ in the repository; env VKCMD_DEMO_DIR)")
    args = parser.parse_args(argv)
    return Demo(Path(args.dir).resolve(), args.once).run()


if __name__ == "__main__":
    sys.exit(main())
