"""What pods reference, read per object with the rights of a node that may read only those objects.

The reader here may ``get`` two named objects and nothing else (no list, no
watch): a cluster-wide informer would loop on 403. Staging never waits: a first
read is "not yet", and the change callback says when to try again.
"""

from __future__ import annotations

import threading
import time

import pytest
import yaml

from tools.procs import wait_until
from vkcmd.kube.client import ApiError, KubeClient, path
from vkcmd.kube.objects import ClusterObjects, pod_references
from vkcmd.pods.errors import NOT_FOUND, NOT_YET, ConfigError


def wait_for(predicate, timeout=10.0, what="condition"):
    return wait_until(predicate, timeout, what, 0.05)


@pytest.fixture
def admin(control_plane):
    client = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    yield client
    client.close()


def reader_client(admin, control_plane, tmp_path, namespace, names):
    """A client for a service account that may only get ``names`` (ConfigMaps and Secrets) in ``namespace``."""
    admin.create(path(resource="serviceaccounts", namespace=namespace), {"metadata": {"name": "reader"}})
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    admin.create(f"{rbac}/namespaces/{namespace}/roles", {
        "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get"],
                   "resourceNames": list(names)}]})
    admin.create(f"{rbac}/namespaces/{namespace}/rolebindings", {
        "metadata": {"name": "reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                    "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    token = admin.create(path(resource="serviceaccounts", namespace=namespace, name="reader", subresource="token"),
                         {"spec": {"expirationSeconds": 3600}})["status"]["token"]
    config = yaml.safe_load(open(control_plane.kubeconfig))
    config["users"][0]["user"] = {"token": token}
    kubeconfig = tmp_path / "reader.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    return KubeClient.from_kubeconfig(str(kubeconfig))


def pod_with(namespace, config_map, secret, uid="uid-1"):
    return {"metadata": {"name": "p", "namespace": namespace, "uid": uid},
            "spec": {"volumes": [{"name": "c", "configMap": {"name": config_map}},
                                 {"name": "s", "projected": {"sources": [{"secret": {"name": secret}}]}}],
                     "containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {
                         "secretKeyRef": {"name": secret, "key": "k"}}}]}]}}


class Changes:
    def __init__(self):
        self.seen = []
        self.event = threading.Event()

    def __call__(self, kind, namespace, name):
        self.seen.append((kind, namespace, name))
        self.event.set()


def read_when_ready(read):
    def attempt():
        try:
            return ("ok", read())
        except ConfigError as error:
            if error.cause == NOT_YET:
                return None
            return ("error", error)
    return wait_for(attempt, what="the object read")


def test_references_of_a_pod():
    pod = pod_with("ns", "cm", "sec")
    pod["spec"]["initContainers"] = [{"name": "i", "envFrom": [{"configMapRef": {"name": "init-cm"}}]}]
    assert pod_references(pod) == {("ConfigMap", "ns", "cm"), ("Secret", "ns", "sec"), ("ConfigMap", "ns", "init-cm")}


def test_only_referenced_objects_are_read_one_by_one_and_changes_are_reported(admin, control_plane, tmp_path,
                                                                              namespace):
    admin.create(path(resource="configmaps", namespace=namespace), {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    reader = reader_client(admin, control_plane, tmp_path, namespace, ["cm", "late"])
    changes = Changes()
    objects = ClusterObjects(reader, on_change=changes, ttl=1.0, fresh_for=0.2)
    objects.start()
    try:
        objects.add_pod(pod_with(namespace, "cm", "late"))
        started = time.monotonic()
        with pytest.raises(ConfigError) as first:  # does not wait for the API: "not yet" (or the copy, if fast)
            objects.secret(namespace, "late")
            objects.secret(namespace, "late")
        assert time.monotonic() - started < 0.5
        assert first.value.cause in (NOT_YET, NOT_FOUND)
        kind, obj = read_when_ready(lambda: objects.config_map(namespace, "cm"))
        assert kind == "ok" and obj["data"] == {"a": "1"}
        kind, missing = read_when_ready(lambda: objects.secret(namespace, "late"))
        assert kind == "ok" and missing is None  # it does not exist (yet): staging says NotFound
        changes.seen.clear()
        admin.create(path(resource="secrets", namespace=namespace),
                     {"metadata": {"name": "late"}, "stringData": {"k": "v"}})
        wait_for(lambda: ("Secret", namespace, "late") in changes.seen, what="the change reported")
        assert objects.secret(namespace, "late")["data"] == {"k": "dg=="}
        admin.patch(path(resource="configmaps", namespace=namespace, name="cm"), {"data": {"a": "2"}},
                    "application/merge-patch+json")
        wait_for(lambda: (objects.config_map(namespace, "cm") or {}).get("data") == {"a": "2"},
                 what="the changed ConfigMap")
        assert ("ConfigMap", namespace, "cm") in changes.seen
        objects.remove_pod({"metadata": {"uid": "uid-1"}})
        assert objects.watched() == 0
    finally:
        objects.stop()
        reader.close()
    with pytest.raises(ApiError) as refused:  # the reader really cannot list: an informer would have looped
        KubeClient.from_kubeconfig(str(tmp_path / "reader.kubeconfig")).get(
            path(resource="secrets", namespace=namespace))
    assert refused.value.status == 403


def test_an_object_the_node_may_not_read_is_a_reason_not_a_wait(admin, control_plane, tmp_path, namespace):
    admin.create(path(resource="configmaps", namespace=namespace), {"metadata": {"name": "other"}, "data": {}})
    reader = reader_client(admin, control_plane, tmp_path, namespace, ["cm"])
    objects = ClusterObjects(reader, ttl=1.0)
    objects.start()
    try:
        objects.add_pod(pod_with(namespace, "other", "cm"))
        kind, error = read_when_ready(lambda: objects.config_map(namespace, "other"))
        assert kind == "error" and error.cause == NOT_FOUND and error.retryable
        assert f"cannot read configmap {namespace}/other" in error.message
    finally:
        objects.stop()
        reader.close()


def test_a_token_is_bound_to_its_pod_with_the_audience_and_expiry_asked(admin, namespace):
    pod = admin.create(path(resource="pods", namespace=namespace), {
        "metadata": {"name": "holder"}, "spec": {"containers": [{"name": "c", "image": "none"}]}})
    changes = Changes()
    objects = ClusterObjects(admin, on_change=changes)
    objects.start()
    try:
        def token():
            return objects.service_account_token(namespace, "default", ["vault"], 1200, pod)

        with pytest.raises(ConfigError) as first:
            token()
        assert first.value.cause == NOT_YET
        kind, value = read_when_ready(token)
        assert kind == "ok" and value
        assert ("ServiceAccountToken", namespace, "default") in changes.seen
        assert token() == value and objects.tokens.requests == 1  # cached
        review = admin.create("/apis/authentication.k8s.io/v1/tokenreviews",
                              {"spec": {"token": value, "audiences": ["vault"]}})["status"]
        assert review["authenticated"] is True
        assert review["user"]["username"] == f"system:serviceaccount:{namespace}:default"
        extra = review["user"].get("extra") or {}
        assert extra.get("authentication.kubernetes.io/pod-name") == ["holder"]
        assert extra.get("authentication.kubernetes.io/pod-uid") == [pod["metadata"]["uid"]]
    finally:
        objects.stop()


def test_a_token_is_fetched_again_after_80_percent_of_its_life(admin, namespace):
    pod = admin.create(path(resource="pods", namespace=namespace), {
        "metadata": {"name": "renewer"}, "spec": {"containers": [{"name": "c", "image": "none"}]}})
    now = [time.time()]
    objects = ClusterObjects(admin, wall_clock=lambda: now[0])
    objects.start()
    try:
        def token():
            return objects.service_account_token(namespace, "default", [], 600, pod)

        _, first = read_when_ready(token)
        now[0] += 0.7 * 600
        assert token() == first and objects.tokens.requests == 1  # 70 %: kept
        now[0] += 0.15 * 600
        assert token() == first  # 85 %: still served while a new one is requested in the background
        wait_for(lambda: token() != first, what="a new token")
        assert objects.tokens.requests == 2
        now[0] += 0.5 * 600
        assert objects.tokens.requests == 2 and token()  # the new one counts from its own issue time
    finally:
        objects.stop()


def test_a_gone_pods_tokens_are_dropped_and_no_other_pods(admin, namespace):
    """forget_pod drops only that pod's tokens (found by its uid, not by a pass over every token)."""
    pods = [admin.create(path(resource="pods", namespace=namespace), {
        "metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "none"}]}}) for name in ("a", "b")]
    objects = ClusterObjects(admin)
    objects.start()
    try:
        def token(pod, audience="api"):
            return objects.service_account_token(namespace, "default", [audience], 1200, pod)

        for pod in pods:
            for audience in ("api", "vault"):
                read_when_ready(lambda: token(pod, audience))
        assert objects.tokens.requests == 4
        objects.forget_pod(pods[0]["metadata"]["uid"])
        assert token(pods[1]) and token(pods[1], "vault") and objects.tokens.requests == 4  # b's kept
        with pytest.raises(ConfigError) as again:
            token(pods[0])  # a's is gone: asked for anew
        assert again.value.cause == NOT_YET
        read_when_ready(lambda: token(pods[0]))
        assert objects.tokens.requests == 5
    finally:
        objects.stop()


def test_staging_never_waits_for_an_api_that_does_not_answer(control_plane, tmp_path):
    """An API server that accepts connections and never answers: reads and tokens are 'not yet' at once
    (before, staging blocked 10 s on the informers' sync and 30 s on the TokenRequest, on the pod worker)."""
    import socket

    silent = socket.create_server(("127.0.0.1", 0))
    held = []

    def hold():
        while True:
            try:
                held.append(silent.accept()[0])
            except OSError:  # closed at the end of the test
                return

    accepting = threading.Thread(target=hold, daemon=True)
    accepting.start()
    config = yaml.safe_load(open(control_plane.kubeconfig))
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{silent.getsockname()[1]}"
    kubeconfig = tmp_path / "silent.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    client = KubeClient.from_kubeconfig(str(kubeconfig))
    objects = ClusterObjects(client)
    objects.start()
    pod = pod_with("ns", "cm", "sec")
    try:
        objects.add_pod(pod)
        for read in (lambda: objects.config_map("ns", "cm"), lambda: objects.secret("ns", "sec"),
                     lambda: objects.service_account_token("ns", "default", [], 3600, pod)):
            started = time.monotonic()
            with pytest.raises(ConfigError) as waiting:
                read()
            assert time.monotonic() - started < 1.0
            assert waiting.value.cause == NOT_YET and waiting.value.reason == "ContainerCreating"
    finally:
        try:
            silent.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        except OSError:
            pass
        silent.close()
        accepting.join(5)
        assert not accepting.is_alive()
        for connection in held:
            connection.close()
        objects.stop()
        client.close()


def test_an_object_read_for_a_pod_already_gone_is_dropped_once_unused(admin, namespace):
    admin.create(path(resource="configmaps", namespace=namespace), {"metadata": {"name": "stray"}, "data": {}})
    now = [0.0]
    objects = ClusterObjects(admin, ttl=0.2, fresh_for=100.0, clock=lambda: now[0])
    objects.start()
    try:
        read_when_ready(lambda: objects.config_map(namespace, "stray"))  # staging of a pod removed meanwhile
        assert objects.watched() == 1
        now[0] += 10.0  # unused for longer than 3 refresh intervals
        wait_for(lambda: objects.watched() == 0, what="the stray object dropped")
    finally:
        objects.stop()
