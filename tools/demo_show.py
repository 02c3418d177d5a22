"""What the demo shows: output helpers, the cluster through kubectl or the Python client, the kubelet API.

Reads go through the ``kubernetes`` client as raw JSON; what the user sees goes through kubectl when it
is on PATH (the command is echoed as typed), else through the same client, formatted like kubectl.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shlex
import ssl
import subprocess
import sys
import time
from pathlib import Path

import yaml

NAMESPACE = "default"


class DemoError(Exception):
    """Something the demo needs did not happen; the message says what and where to look."""


class Stop(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: stop everything in order."""


# --- output ---------------------------------------------------------------------------------------

def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say(f"\n== {text}")


def rel(path: Path | str) -> str:
    """``path`` relative to the current directory when it is below it (shorter to read and to copy)."""
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)


class Progress:
    """One progress line: rewritten in place on a terminal, else printed only when its ``key`` changes."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.key: object = None
        self.text = ""

    def update(self, text: str, key: object) -> None:
        if self.tty:
            if text != self.text:
                sys.stdout.write("\r\033[K" + text)
                sys.stdout.flush()
        elif key != self.key:
            say(text)
        self.text, self.key = text, key

    def done(self) -> None:
        if self.tty and self.text:
            sys.stdout.write("\n")
            sys.stdout.flush()
        self.key, self.text = None, ""


# --- the Kubernetes side: kubectl when present, else the Python client ------------------------------

class Cluster:
    """Reads go through the ``kubernetes`` client (raw JSON); what the user sees goes through kubectl if any."""

    def __init__(self, kubeconfig: Path, scratch: Path, kubectl: str | None) -> None:
        from kubernetes import client, config

        self.kubeconfig = kubeconfig
        self.kubectl_path = kubectl
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(scratch / "kube-cache")}

    def close(self) -> None:
        self.api.close()

    # reads

    def _json(self, response) -> dict:
        return json.loads(response.data)

    def node(self, name: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._json(self.core.read_node(name, _preload_content=False, _request_timeout=5))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def pods(self) -> list[dict]:
        return self._json(self.core.list_namespaced_pod(NAMESPACE, _preload_content=False,
                                                        _request_timeout=5))["items"]

    # what the user sees

    def kubectl(self, *args: str) -> str:
        """Run kubectl, echoing the command as the user would type it; return its output."""
        say("$ kubectl " + " ".join(shlex.quote(a) for a in args))
        proc = subprocess.run([self.kubectl_path, *args], env=self.env, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        out = proc.stdout + proc.stderr
        sys.stdout.write(out if out.endswith("\n") or not out else out + "\n")
        sys.stdout.flush()
        if proc.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed with exit code {proc.returncode}")
        return proc.stdout

    def label_node(self, name: str, key: str, value: str) -> None:
        """An operator's label on the node (one the node itself may not set), with the admin identity."""
        if self.kubectl_path:
            self.kubectl("label", "node", name, f"{key}={value}", "--overwrite")
            return
        say(f"# (python client) label node {name} {key}={value}")
        self.core.patch_node(name, {"metadata": {"labels": {key: value}}}, _request_timeout=10)
        say(f"node/{name} labeled")

    def show_nodes(self) -> None:
        if self.kubectl_path:
            self.kubectl("get", "nodes", "-L", "jiriaf.nodetype,jiriaf.site,jiriaf.alivetime")
            return
        say("# (python client) nodes with their jiriaf.* labels")
        from kubernetes import client

        rows = [("NAME", "STATUS", "ROLES", "VERSION", "JIRIAF.NODETYPE", "JIRIAF.SITE", "JIRIAF.ALIVETIME")]
        for node in self._json(client.CoreV1Api(self.api).list_node(_preload_content=False))["items"]:
            labels = node["metadata"].get("labels", {})
            ready = any(c["type"] == "Ready" and c["status"] == "True"
                        for c in node.get("status", {}).get("conditions", []))
            status = ("Ready" if ready else "NotReady") + (",SchedulingDisabled" if node["spec"].get(
                "unschedulable") else "")
            rows.append((node["metadata"]["name"], status, labels.get("kubernetes.io/role", "<none>"),
                         node["status"].get("nodeInfo", {}).get("kubeletVersion", ""),
                         labels.get("jiriaf.nodetype", ""), labels.get("jiriaf.site", ""),
                         labels.get("jiriaf.alivetime", "")))
        table(rows)

    def show_pods(self) -> None:
        if self.kubectl_path:
            self.kubectl("get", "pods", "-o", "wide")
            return
        say("# (python client) pods")
        rows = [("NAME", "READY", "PHASE", "STATUS", "RESTARTS", "IP", "NODE")]
        for pod in sorted(self.pods(), key=lambda p: p["metadata"]["name"]):
            statuses = pod.get("status", {}).get("containerStatuses", [])
            ready = sum(1 for s in statuses if s.get("ready"))
            rows.append((pod["metadata"]["name"], f"{ready}/{len(pod['spec']['containers'])}", phase(pod),
                         container_reason(pod), str(sum(s.get("restartCount", 0) for s in statuses)),
                         pod.get("status", {}).get("podIP", "<none>"), pod["spec"].get("nodeName", "<none>")))
        table(rows)

    def show_logs(self, pod: str) -> None:
        if self.kubectl_path:
            self.kubectl("logs", pod)
            return
        say(f"# (python client) logs of pod {pod}")
        text = self.core.read_namespaced_pod_log(pod, NAMESPACE, _request_timeout=10)
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")

    def pod_metrics(self) -> dict[str, dict]:
        """metrics.k8s.io PodMetrics of the namespace by name (what ``kubectl top pods`` reads)."""
        from kubernetes import client

        items = client.CustomObjectsApi(self.api).list_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", NAMESPACE, "pods", _request_timeout=30)["items"]
        return {m["metadata"]["name"]: m for m in items}

    def show_top(self) -> None:
        if self.kubectl_path:
            self.kubectl("top", "nodes")
            self.kubectl("top", "pods")
            return
        say("# (python client) metrics.k8s.io/v1beta1 pods (what kubectl top pods shows)")
        rows = [("NAME", "CPU(cores)", "MEMORY(bytes)")]
        for name, m in sorted(self.pod_metrics().items()):
            cpu = sum(quantity(c["usage"]["cpu"]) for c in m["containers"])
            memory = sum(quantity(c["usage"]["memory"]) for c in m["containers"])
            rows.append((name, f"{int(cpu * 1000)}m", f"{int(memory / 2**20)}Mi"))
        table(rows)

    def apply(self, directory: Path) -> None:
        if self.kubectl_path:
            self.kubectl("apply", "-f", rel(directory))
            return
        from kubernetes import utils
        from kubernetes.utils import FailToCreateError

        say(f"# (python client) create every object in {rel(directory)}/")
        for path in sorted(directory.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc:
                    continue
                try:
                    utils.create_from_dict(self.api, doc, namespace=NAMESPACE)
                except FailToCreateError as error:
                    if all(getattr(e, "status", None) == 409 for e in error.api_exceptions):
                        say(f"{doc['kind'].lower()}/{doc['metadata']['name']} unchanged (exists)")
                        continue
                    raise DemoError(f"creating {doc['kind']} {doc['metadata']['name']} failed: {error}") from None
                say(f"{doc['kind'].lower()}/{doc['metadata']['name']} created")


def quantity(text: str) -> float:
    """A metrics quantity (``123456n`` cores, ``2048Ki`` bytes) as a number."""
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[:-len(suffix)]) * factor
    return float(text)


def table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        say("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def phase(pod: dict) -> str:
    return pod.get("status", {}).get("phase", "Pending")


def container_reason(pod: dict) -> str:
    for status in pod.get("status", {}).get("containerStatuses", []):
        for kind in ("waiting", "terminated"):
            reason = (status.get("state", {}).get(kind) or {}).get("reason")
            if reason:
                return reason
    return phase(pod)


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def short_name(pod: dict) -> str:
    """Deployment and Job pods as ``ticker-*`` / ``work-*`` (their names end in a hash or index and a suffix)."""
    name = pod["metadata"]["name"]
    job = pod["metadata"].get("labels", {}).get("batch.kubernetes.io/job-name")
    if job:
        return job + "-*"
    template_hash = pod["metadata"].get("labels", {}).get("pod-template-hash")
    if template_hash and f"-{template_hash}-" in name:
        return name.split(f"-{template_hash}-")[0] + "-*"
    return name


def phase_line(pods: list[dict]) -> str:
    groups: dict[tuple[str, str], int] = {}
    for pod in pods:
        key = (short_name(pod), phase(pod))
        groups[key] = groups.get(key, 0) + 1
    parts = [f"{name} {ph}" if n == 1 else f"{name} {n}x {ph}" for (name, ph), n in sorted(groups.items())]
    return ", ".join(parts) or "no pods yet"


# --- the kubelet API --------------------------------------------------------------------------------

class KubeletApi:
    """GETs on vkcmd's kubelet API with the admin client certificate of the kubeconfig (as curl would)."""

    def __init__(self, kubeconfig: Path, scratch: Path, port: int, serving_cert: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        user = config["users"][0]["user"]
        self.cert, self.key = scratch / "admin.crt", scratch / "admin.key"
        self.cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        fd = os.open(self.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(user["client-key-data"]))
        self.port = port
        self.serving_cert = serving_cert
        self.context = ssl.create_default_context(cafile=str(serving_cert))
        self.context.load_cert_chain(str(self.cert), str(self.key))

    def curl(self, path: str) -> str:
        return (f"curl -s --cacert {rel(self.serving_cert)} --cert {rel(self.cert)} --key {rel(self.key)} "
                f"https://127.0.0.1:{self.port}{path}")

    def get(self, path: str) -> str:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode()
        finally:
            conn.close()
        if response.status != 200:
            raise DemoError(f"GET {path} on the kubelet API answered {response.status}: {body[:200]}")
        return body


def show_metrics(api: KubeletApi) -> None:
    say("$ " + api.curl("/stats/summary"))
    api.get("/stats/summary")  # usageNanoCores: the rate since the previous request (a scan lasts ~1 s)
    time.sleep(2.0)
    summary = json.loads(api.get("/stats/summary"))
    node = summary["node"]
    say(f"node {node['nodeName']}: cpu {node['cpu']['usageNanoCores'] / 1e9:.2f} cores, "
        f"memory working set {node['memory']['workingSetBytes'] / 2**20:.0f} MiB (the whole host)")
    rows = [("POD", "CPU(cores)", "MEMORY(MiB)", "PROCESSES")]
    for pod in sorted(summary["pods"], key=lambda p: p["podRef"]["name"]):
        rows.append((pod["podRef"]["name"], f"{pod['cpu']['usageNanoCores'] / 1e9:.3f}",
                     f"{pod['memory']['workingSetBytes'] / 2**20:.1f}",
                     str(pod.get("process_stats", {}).get("process_count", 0))))
    table(rows)
    say("$ " + api.curl("/metrics/resource"))
    text = api.get("/metrics/resource")
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    say(f"{len(samples)} samples (node_*, pod_* and container_* cpu and memory, as metrics-server reads them); p1's:")
    for line in samples:
        if 'pod="p1"' in line and line.startswith("container_"):
            say("  " + line)
