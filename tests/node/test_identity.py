"""A real vkcmd node running as a node identity (system:node:<name> in system:nodes, client certificate).

It leaves out the labels NodeRestriction forbids a node (and says so once), keeps
the jiriaf.* and type labels and the provider taint, and runs a pod that takes a
script from a Secret, env from a ConfigMap and a bound service-account token.
"""

from __future__ import annotations

import time

from tests.e2e.node import Node, container_state, example, wait_for
from vkcmd.kube.client import path


def test_a_node_identity_registers_without_forbidden_labels_and_runs_pods(control_plane, tmp_path, namespace):
    name = "vk-identity"
    kubeconfig = control_plane.write_kubeconfig(str(tmp_path / "node.kubeconfig"), f"system:node:{name}",
                                                ["system:nodes"])
    node = Node(control_plane, tmp_path, name=name, KUBECONFIG=kubeconfig).start()
    try:
        labels = node.client.get(path(resource="nodes", name=name))["metadata"]["labels"]
        assert "kubernetes.io/role" not in labels
        assert labels["type"] == "virtual-kubelet" and labels["jiriaf.site"] == "Local"
        assert labels["kubernetes.io/hostname"] == name
        log = node.log()
        assert log.count("not setting kubernetes.io/role=agent") == 1, log
        for doc in example("secret-pod.yaml"):
            if doc["kind"] == "Pod":
                doc["spec"]["nodeSelector"] = {"type": "virtual-kubelet", "kubernetes.io/hostname": name}
                doc["spec"]["tolerations"] = [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]
                doc["spec"]["volumes"].append({"name": "token", "projected": {"sources": [{"serviceAccountToken": {
                    "path": "token", "audience": "vault", "expirationSeconds": 3600}}]}})
                doc["spec"]["containers"][0]["volumeMounts"].append({"name": "token", "mountPath": "sa"})
            node.create(doc, namespace)
        pod = node.wait_phase("hello", namespace=namespace, timeout=40)
        assert pod["status"]["phase"] == "Succeeded", (container_state(pod, "main"), node.log()[-3000:])
        stdout = (node.container_dir("hello", "main", namespace) / "stdout").read_text()
        assert f"hello from hello on {name}, greeting=bonjour" in stdout
        token = (node.container_dir("hello", "main", namespace) / "sa" / "token").read_text()
        review = node.client.create("/apis/authentication.k8s.io/v1/tokenreviews",
                                    {"spec": {"token": token, "audiences": ["vault"]}})["status"]
        assert review["authenticated"] and review["user"]["extra"]["authentication.kubernetes.io/pod-name"] == [
            "hello"]
        assert token not in node.log()
    finally:
        assert node.stop() == 0, node.log()[-3000:]


def test_a_pod_waiting_on_a_secret_that_does_not_exist_yet_starts_once_it_is_created(control_plane, tmp_path,
                                                                                     namespace):
    name = "vk-identity-late"
    kubeconfig = control_plane.write_kubeconfig(str(tmp_path / "node.kubeconfig"), f"system:node:{name}",
                                                ["system:nodes"])
    node = Node(control_plane, tmp_path, name=name, KUBECONFIG=kubeconfig).start()
    try:
        node.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late"}, "spec": {
            "nodeName": name, "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "none", "command": ["sh", "-c", "echo $K"],
                            "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}]}]}},
                    namespace)

        def waiting_reason():
            status = (container_state(node.pod("late", namespace)).get("state") or {}).get("waiting") or {}
            return status.get("reason")

        wait_for(lambda: waiting_reason() == "CreateContainerConfigError", timeout=20, what="waiting on the Secret")
        time.sleep(3)  # its absence is now known and polled with back-off
        created = time.monotonic()
        node.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "later"},
                     "stringData": {"k": "arrived"}}, namespace)
        pod = node.wait_phase("late", namespace=namespace, timeout=40)
        assert pod["status"]["phase"] == "Succeeded"
        assert time.monotonic() - created < 30
        assert (node.container_dir("late", "c", namespace) / "stdout").read_text() == "arrived\n"
    finally:
        assert node.stop() == 0, node.log()[-3000:]
