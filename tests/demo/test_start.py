"""``tools/start.sh`` and ``tools/slurm/vkcmd.sbatch`` start a real node against the local control plane."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.node import REPO, free_port, wait_for
from vkcmd.kube.client import ApiError, KubeClient, path

START = REPO / "tools" / "start.sh"
SBATCH = REPO / "tools" / "slurm" / "vkcmd.sbatch"
# variables the scripts default themselves; a developer's shell must not decide the test
SCRIPT_VARS = ("MAIN", "VK_PATH", "VK_BIN", "APISERVER_CERT_LOCATION", "APISERVER_KEY_LOCATION",
               "APISERVER_CA_CERT_LOCATION", "NODENAME", "VKUBELET_POD_IP", "KUBELET_PORT", "JIRIAF_WALLTIME",
               "JIRIAF_NODETYPE", "JIRIAF_SITE", "VK_CPU", "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_END_TIME",
               "SLURM_SUBMIT_DIR", "SLURM_CLUSTER_NAME", "SLURM_CPUS_ON_NODE", "VK_WORKSPACE_ROOT", "VK_STATE_DIR")


def clean_env(control_plane, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRIPT_VARS}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(KUBECONFIG=control_plane.kubeconfig, HOME=str(home), VKUBELET_POD_IP="127.0.0.1",
               KUBELET_PORT=str(free_port()), **extra)
    return env


class Script:
    """A start script run in the background, as a user would (`tools/start.sh &`)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, node: str, kubeconfig: str) -> None:
        self.node = node
        self.cwd = cwd
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.client = KubeClient.from_kubeconfig(kubeconfig)

    def log(self) -> str:
        log = self.cwd / f"{self.node}.log"
        return log.read_text(errors="replace") if log.exists() else "(no log yet)"

    def get_node(self) -> dict | None:
        try:
            return self.client.get(path(resource="nodes", name=self.node))
        except ApiError:
            return None

    def wait_ready(self) -> dict:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {self.proc.stdout.read()}\n{self.log()}")
            node = self.get_node()
            ok = node and any(c["type"] == "Ready" and c["status"] == "True"
                              for c in node.get("status", {}).get("conditions", []))
            return node if ok else None

        return wait_for(ready, timeout=30, what=f"node {self.node} Ready")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()
        self.client.close()
        return self.proc.returncode


def test_start_script_starts_a_node_with_the_seed_launch_line_and_stops_on_sigterm(control_plane, tmp_path):
    env = clean_env(control_plane, tmp_path, NODENAME="vk-start", JIRIAF_WALLTIME="120")
    script = Script(["bash", str(START)], env, tmp_path, "vk-start", control_plane.kubeconfig)
    try:
        node = script.wait_ready()
        labels = node["metadata"]["labels"]
        assert labels["jiriaf.nodetype"] == "cpu" and labels["jiriaf.site"] == "Local"  # the script's defaults
        assert labels["jiriaf.walltime"] == "120" and 0 < int(labels["jiriaf.alivetime"]) <= 120
        assert {"key": "virtual-kubelet.io/provider", "value": "mock", "effect": "NoSchedule"} in node["spec"]["taints"]
        port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        assert port == int(env["KUBELET_PORT"])
        # exec'd: the script's pid is vkcmd itself, started with the seed's flags and the venv's python
        cmdline = Path(f"/proc/{script.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0].decode().startswith(str(REPO / ".venv" / "bin" / "python"))
        assert [a.decode() for a in cmdline[1:-1]] == ["-m", "vkcmd", "--nodename", "vk-start", "--provider",
                                                       "mock", "--klog.v", "3"]
        wait_for(lambda: "Registering -> Ready" in script.log(), what="the trace in ./$NODENAME.log")
    finally:
        code = script.stop()
    assert code == 0, script.log()
    log = script.log()
    assert "Ready -> Draining on drain (Shutdown)" in log and "Draining -> Expired" in log


def test_start_script_reports_a_bad_setting_in_the_log_and_exits_2(control_plane, tmp_path):
    env = clean_env(control_plane, tmp_path, NODENAME="vk-bad", JIRIAF_WALLTIME="abc")
    proc = subprocess.run(["bash", str(START)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "log: " + str(tmp_path / "vk-bad.log") in proc.stderr
    assert (tmp_path / "vk-bad.log").read_text().strip() == \
        "vkcmd: invalid setting JIRIAF_WALLTIME='abc': expected an integer >= 0"


def test_start_script_takes_serving_certificates_from_vk_path(control_plane, tmp_path):
    """VK_PATH/client.crt and client.key (the seed's names) become the kubelet API's serving pair."""
    vk_path = tmp_path / "apiserver"
    vk_path.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(vk_path / "client.key"), "-out", str(vk_path / "client.crt"), "-days", "1",
                    "-subj", "/CN=vk-certs", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    env = clean_env(control_plane, tmp_path, NODENAME="vk-certs", VK_PATH=str(vk_path))
    script = Script(["bash", str(START)], env, tmp_path, "vk-certs", control_plane.kubeconfig)
    try:
        script.wait_ready()
        served = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{env['KUBELET_PORT']}",
                                 "-showcerts"], input="", capture_output=True, text=True, timeout=20).stdout
        assert "CN = vk-certs" in served or "CN=vk-certs" in served, served
        assert not (tmp_path / "home" / ".vkcmd" / "vk-certs" / "kubelet-serving.crt").exists()
    finally:
        assert script.stop() == 0, script.log()


def test_sbatch_script_is_valid_bash():
    proc = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    directives = [line for line in SBATCH.read_text().splitlines() if line.startswith("#SBATCH")]
    assert any("--time=" in line for line in directives) and any("--job-name=" in line for line in directives)


@pytest.mark.parametrize("source", ["squeue", "SLURM_JOB_END_TIME"])
def test_sbatch_script_starts_a_node_for_the_length_of_the_job(control_plane, tmp_path, source):
    """Inside a (pretend) Slurm job the node is named after the job and lives as long as the job's time left."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "squeue.calls"
    squeue = bin_dir / "squeue"
    squeue.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "2:00:00"\n')  # %L: 2 hours left
    squeue.chmod(0o755)
    submit = tmp_path / "submit"
    submit.mkdir()
    extra = {"SLURM_JOB_END_TIME": str(int(time.time()) + 1800)} if source == "SLURM_JOB_END_TIME" else {}
    env = clean_env(control_plane, tmp_path, SLURM_JOB_ID="4242", SLURM_SUBMIT_DIR=str(submit), MAIN=str(REPO),
                    JIRIAF_WALLTIME="999",  # left over in the submitting shell: the script must ignore it
                    PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **extra)
    script = Script(["bash", str(SBATCH)], env, submit, "vk-slurm-4242", control_plane.kubeconfig)
    try:
        labels = script.wait_ready()["metadata"]["labels"]
        walltime = int(labels["jiriaf.walltime"])
        if source == "squeue":
            assert walltime == 7200
            assert calls.read_text().split() == ["-h", "-j", "4242", "-o", "%L"]
        else:
            assert 1790 <= walltime <= 1800
            assert not calls.exists()
        assert 0 < int(labels["jiriaf.alivetime"]) <= walltime
        assert f"walltime taken from the job's end, {walltime}s" in script.log()
    finally:
        assert script.stop() == 0, script.log()


def test_a_storm_of_sigterms_drains_once_and_exits(control_plane, tmp_path):
    """Signals land anywhere in the main loop: hundreds of SIGTERMs in a tight loop must neither deadlock
    the loop (a handler taking a lock its thread holds) nor crash it; vkcmd drains and exits 0."""
    from tests.e2e.node import Node

    node = Node(control_plane, tmp_path, name="vk-storm").start()
    process = node.process
    try:
        sent = 0
        until = time.monotonic() + 3
        while process.poll() is None and time.monotonic() < until:
            for _ in range(50):
                try:
                    os.kill(process.pid, signal.SIGTERM)
                    sent += 1
                except ProcessLookupError:
                    break
            time.sleep(0.002)
        try:
            code = process.wait(45)
        except subprocess.TimeoutExpired:
            code = None
        log = node.log()
        assert code == 0, f"after {sent} SIGTERMs: exit {code}\n{log[-3000:]}"
        assert log.count("draining node vk-storm: Shutdown") == 1, log[-3000:]
        assert "node vk-storm expired; exiting" in log, log[-3000:]
    finally:
        node.stop()
