"""Per-namespace defaults: ServiceAccount `default` and ConfigMap `kube-root-ca.crt`.

Owns what kube-controller-manager's serviceaccount controller and
root-ca-cert-publisher do: every active namespace has a `default`
ServiceAccount and a `kube-root-ca.crt` ConfigMap whose `ca.crt` is the
cluster CA (read from the kubeconfig).  Both are re-created if deleted and
the ConfigMap is corrected if its data drifts.  Terminating namespaces are
left alone.
"""

from __future__ import annotations

import base64
import os
import threading

import yaml

from .base import Worker
from .informers import Informers
from .kube import Kube, KubeError


ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DEFAULT_ACCOUNT = "default"
_DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
                "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
                "guaranteed across distributions of Kubernetes clusters.")


def cluster_ca_pem(kubeconfig_path: str) -> str:
    """The CA of the current context's cluster: certificate-authority-data, or the file it names."""
    with open(kubeconfig_path, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh) or {}
    current = cfg.get("current-context")
    context = next((c.get("context") or {} for c in cfg.get("contexts") or [] if c.get("name") == current),
                   {})
    cluster = next((c.get("cluster") or {} for c in cfg.get("clusters") or []
                    if c.get("name") == context.get("cluster")), None)
    if cluster is None:
        clusters = cfg.get("clusters") or []
        cluster = (clusters[0].get("cluster") or {}) if clusters else {}
    if cluster.get("certificate-authority-data"):
        return base64.b64decode(cluster["certificate-authority-data"]).decode()
    path = cluster.get("certificate-authority")
    if path:
        if not os.path.isabs(path):
            path = os.path.join(os.path.dirname(os.path.abspath(kubeconfig_path)), path)
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    return ""


class NamespaceController(Worker):
    """One named worker thread ensuring the defaults of each namespace."""

    def __init__(self, kube: Kube, informers: Informers, stop: threading.Event, *, ca_pem: str):
        super().__init__("kubelite-namespaces", stop)
        self.kube = kube
        self.ca_pem = ca_pem
        self.namespaces = informers.get("/api/v1/namespaces", "namespaces")
        self.accounts = informers.get("/api/v1/serviceaccounts", "default-serviceaccounts",
                                      {"fieldSelector": f"metadata.name={DEFAULT_ACCOUNT}"})
        self.configmaps = informers.get("/api/v1/configmaps", "root-ca-configmaps",
                                        {"fieldSelector": f"metadata.name={ROOT_CA_CONFIGMAP}"})
        self.namespaces.add_handler(self._on_namespace)
        self.accounts.add_handler(self._on_dependent)
        self.configmaps.add_handler(self._on_dependent)

    def _on_namespace(self, event: str, ns: dict, old: dict | None) -> None:
        if event != "DELETED":
            self.queue.add(ns["metadata"]["name"])

    def _on_dependent(self, event: str, obj: dict, old: dict | None) -> None:
        if event == "DELETED" or obj["metadata"].get("name") == ROOT_CA_CONFIGMAP:
            self.queue.add(obj["metadata"].get("namespace", ""))

    what = "namespace"
    retry_on = (0, 429, 500, 503)

    def handle(self, name: str) -> None:
        ns = self.namespaces.get(name)
        if ns is None or ns["metadata"].get("deletionTimestamp") \
                or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        if self.accounts.get(f"{name}/{DEFAULT_ACCOUNT}") is None:
            self._create(f"/api/v1/namespaces/{name}/serviceaccounts", {
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": DEFAULT_ACCOUNT, "namespace": name}})
        wanted = {"ca.crt": self.ca_pem}
        current = self.configmaps.get(f"{name}/{ROOT_CA_CONFIGMAP}")
        if current is None:
            self._create(f"/api/v1/namespaces/{name}/configmaps", {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": name,
                             "annotations": {"kubernetes.io/description": _DESCRIPTION}},
                "data": wanted})
        elif current.get("data") != wanted:
            self.kube.patch(f"/api/v1/namespaces/{name}/configmaps/{ROOT_CA_CONFIGMAP}",
                            {"data": {**{k: None for k in current.get("data") or {}}, **wanted}})

    def _create(self, path: str, body: dict) -> None:
        try:
            self.kube.create(path, body)
        except KubeError as exc:
            if exc.status not in (409,):  # already there (or appearing): fine
                if exc.status == 403 or exc.status == 404:  # namespace terminating or gone
                    return
                raise
