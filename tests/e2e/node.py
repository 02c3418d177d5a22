"""A real ``python -m vkcmd`` node for end-to-end tests, and helpers to watch what it does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tools.procs import free_port, processes_with, wait_until
from vkcmd.kube.client import ApiError, KubeClient, path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def wait_for(predicate, timeout=15.0, interval=0.05, what="condition"):
    return wait_until(predicate, timeout, what, interval)


class Node:
    """One vkcmd process joined to a control plane; stopped (drained) at exit."""

    def __init__(self, control_plane, workdir: Path, name: str = "vk-e2e", identity: str = "node", **env: str) -> None:
        """``identity``: "node" runs vkcmd as ``system:node:<name>`` (a kubelet's rights, under the Node
        authorizer and NodeRestriction: least privilege in every e2e test); "bootstrap" gives it only a
        bootstrap kubeconfig made by ``python -m tools.kubelite token create`` (vkcmd gets its certificate
        by CSR and writes ``self.kubeconfig``); "admin" with the admin kubeconfig."""
        self.name = name
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        self.kubeconfig = env.get("KUBECONFIG") or str(workdir / f"{name}.kubeconfig")
        bootstrap = {}
        if identity == "admin":
            self.kubeconfig = control_plane.kubeconfig
        elif identity == "bootstrap":  # a VK_BOOTSTRAP_KUBECONFIG given in env is used as it is
            bootstrap = {"VK_BOOTSTRAP_KUBECONFIG": env.get("VK_BOOTSTRAP_KUBECONFIG") or bootstrap_kubeconfig(
                control_plane, workdir / f"{name}.bootstrap.kubeconfig")}
        elif "KUBECONFIG" not in env:  # (a test that passes its own KUBECONFIG keeps it)
            control_plane.node_kubeconfig(self.kubeconfig, name)
        self.env = {**os.environ, "KUBECONFIG": self.kubeconfig, **bootstrap, "NODENAME": name,
                    "HOME": str(self.home), "VKUBELET_POD_IP": "127.0.0.1", "KUBELET_PORT": str(self.port),
                    "JIRIAF_WALLTIME": "600", "JIRIAF_NODETYPE": "cpu", "JIRIAF_SITE": "Local",
                    "VK_BACKOFF_INITIAL": "0.5", "VK_BACKOFF_MAX": "2", **env}
        self.process: subprocess.Popen | None = None
        self.client = KubeClient.from_kubeconfig(control_plane.kubeconfig)

    def start(self) -> Node:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "vkcmd", "--klog.v", "3"], cwd=REPO, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(self.ready, timeout=20, what=f"node {self.name} Ready")
        return self

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"vkcmd exited with {self.process.returncode}:\n{self.log()}")
        try:
            node = self.client.get(path(resource="nodes", name=self.name))
        except ApiError:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and \
            not node["spec"].get("unschedulable")

    def processes(self) -> list[int]:
        """Live processes of this node's pods (the run marker plus this node's HOME)."""
        return processes_with({"VKCMD_RUN": None, "HOME": str(self.home)})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        self._log.close()
        return code

    def kill_hard(self) -> None:
        """SIGKILL vkcmd itself (its pods keep running)."""
        self.process.kill()
        self.process.wait()
        self.process = None
        self._log.close()

    # --- pods -------------------------------------------------------------------------------

    def create(self, manifest: dict, namespace: str = "default") -> dict:
        kind = manifest["kind"]
        resource = {"Pod": "pods", "ConfigMap": "configmaps", "Secret": "secrets"}[kind]
        return self.client.create(path(resource=resource, namespace=namespace), manifest)

    def pod(self, name: str, namespace: str = "default") -> dict | None:
        try:
            return self.client.get(path(resource="pods", namespace=namespace, name=name))
        except ApiError as error:
            if error.not_found:
                return None
            raise

    def wait_phase(self, name: str, phases=("Succeeded", "Failed"), namespace: str = "default",
                   timeout: float = 20) -> dict:
        return wait_for(lambda: (lambda p: p if p and p.get("status", {}).get("phase") in phases else None)(
            self.pod(name, namespace)), timeout=timeout, what=f"pod {name} in {phases}")

    def wait_gone(self, name: str, namespace: str = "default", timeout: float = 20) -> None:
        wait_for(lambda: self.pod(name, namespace) is None, timeout=timeout, what=f"pod {name} deleted")

    def delete(self, name: str, namespace: str = "default", grace: int | None = None) -> None:
        body = {"gracePeriodSeconds": grace} if grace is not None else None
        self.client.delete(path(resource="pods", namespace=namespace, name=name), body)

    def container_dir(self, pod: str, container: str, namespace: str = "default") -> Path:
        return self.home / namespace / pod / "containers" / container


def bootstrap_kubeconfig(control_plane, path: Path, ttl: str = "1h") -> str:
    """A bootstrap token's kubeconfig at ``path``, made as an operator would: the kubelite CLI."""
    proc = subprocess.run([sys.executable, "-m", "tools.kubelite", "token", "create", "--kubeconfig",
                           control_plane.kubeconfig, "--ttl", ttl, "--kubeconfig-out", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return str(path)


def kubelet_client_context(control_plane, directory: Path, user: str) -> "ssl.SSLContext":
    """TLS to a node's kubelet API as ``user`` in system:masters (the node's serving pair is self-signed)."""
    import ssl

    pair = control_plane.issue_client_cert(user, ["system:masters"])
    (directory / "c.crt").write_bytes(pair.cert_pem)
    (directory / "c.key").write_bytes(pair.key_pem)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(directory / "c.crt", directory / "c.key")
    return context


def pod_manifest(name: str, command: list[str], *, restart: str = "Never", node: str | None = None,
                 **spec) -> dict:
    """A pod placed on vkcmd nodes (nodeSelector + toleration) running ``command`` with no script."""
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": restart,
                     "containers": [{"name": "c", "image": "none", "command": command}],
                     "nodeSelector": {"type": "virtual-kubelet"},
                     "tolerations": [{"key": "virtual-kubelet.io/provider", "value": "mock",
                                      "effect": "NoSchedule"}], **spec}}
    if node:
        body["spec"]["nodeName"] = node
    return body


def example(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text()) if doc]


def container_state(pod: dict, container: str = "c") -> dict:
    for status in pod.get("status", {}).get("containerStatuses", []):
        if status["name"] == container:
            return status
    return {}
