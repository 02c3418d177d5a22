"""kubelite controllers through the real client: scheduling, deployments, namespaces, gc.

Nodes here are made by hand (Ready, with a fresh Lease); nothing runs the
pods, so readiness is written by the test where a kubelet would write it.
"""

from __future__ import annotations

import base64
import time
import uuid
from datetime import datetime, timezone

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

PROVIDER_TAINT = {"key": "virtual-kubelet.io/provider", "value": "mock", "effect": "NoSchedule"}
PROVIDER_TOLERATION = {"key": "virtual-kubelet.io/provider", "value": "mock", "effect": "NoSchedule"}
VK_LABELS = {"type": "virtual-kubelet", "kubernetes.io/role": "agent", "jiriaf.nodetype": "cpu",
             "jiriaf.site": "Local", "jiriaf.alivetime": "3600"}


def now(micro: bool = False) -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def make_node(core, coord, name, labels=None, taints=None, pods="110"):
    body = {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints} if taints else {},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
                       "allocatable": {"pods": pods, "cpu": "2", "memory": "4Gi"},
                       "capacity": {"pods": pods, "cpu": "2", "memory": "4Gi"}}}
    core.create_node(body)
    node = core.read_node(name)
    if not node.status or not node.status.conditions:  # status is a subresource: write it there
        core.patch_node_status(name, {"status": body["status"]})
    coord.create_namespaced_lease("kube-node-lease", {
        "metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now(True)}})


@pytest.fixture(scope="module")
def core(kube_client):
    return client.CoreV1Api(kube_client)


@pytest.fixture(scope="module")
def apps(kube_client):
    return client.AppsV1Api(kube_client)


@pytest.fixture(scope="module")
def nodes(control_plane, kube_client, core):
    if not control_plane.controllers_running:
        pytest.skip("control plane runs without controllers")
    coord = client.CoordinationV1Api(kube_client)
    make_node(core, coord, "worker-1", {"role": "worker"})
    make_node(core, coord, "vk-1", VK_LABELS, [PROVIDER_TAINT], pods="1000")
    return ["worker-1", "vk-1"]


def pod_body(name, **spec):
    return {"metadata": {"name": name}, "spec": {"restartPolicy": "Never",
                                                   "containers": [{"name": "c", "image": "none",
                                                                   "command": ["sleep", "1"]}], **spec}}


def bound_node(core, ns, name):
    return core.read_namespaced_pod(name, ns).spec.node_name


def events_for(core, ns, name):
    return [e for e in core.list_namespaced_event(ns).items if e.involved_object.name == name]


# ---- scheduler ------------------------------------------------------------------------

def test_pod_is_bound_with_scheduled_event(core, nodes, namespace):
    start = time.monotonic()
    core.create_namespaced_pod(namespace, pod_body("quick"))
    node = wait_for(lambda: bound_node(core, namespace, "quick"), what="binding")
    assert time.monotonic() - start < 2.0
    assert node == "worker-1"  # vk-1 is tainted
    event = wait_for(lambda: [e for e in events_for(core, namespace, "quick") if e.reason == "Scheduled"],
                     what="Scheduled event")[0]
    assert event.message == f"Successfully assigned {namespace}/quick to worker-1"
    assert event.type == "Normal" and event.source.component == "default-scheduler"


def test_affinity_example_lands_on_virtual_kubelet(core, nodes, namespace):
    terms = [{"matchExpressions": [
        {"key": "jiriaf.nodetype", "operator": "In", "values": ["cpu"]},
        {"key": "jiriaf.site", "operator": "In", "values": ["Local"]},
        {"key": "jiriaf.alivetime", "operator": "Gt", "values": ["10"]}]}]
    core.create_namespaced_pod(namespace, pod_body(
        "placed", nodeSelector={"kubernetes.io/role": "agent"}, tolerations=[PROVIDER_TOLERATION],
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}))
    assert wait_for(lambda: bound_node(core, namespace, "placed")) == "vk-1"


def test_unschedulable_pod_condition_event_and_retry(core, nodes, namespace):
    label = f"pool-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod(namespace, pod_body("waiting", nodeSelector={"pool": label}))

    def condition():
        pod = core.read_namespaced_pod("waiting", namespace)
        return next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)

    cond = wait_for(condition, what="PodScheduled condition")
    assert cond.status == "False" and cond.reason == "Unschedulable"
    assert cond.message.startswith("0/")
    assert "node(s) didn't match Pod's node affinity/selector" in cond.message
    assert "node(s) had untolerated taint {virtual-kubelet.io/provider: mock}" in cond.message
    assert "preemption: " in cond.message
    failed = wait_for(lambda: [e for e in events_for(core, namespace, "waiting") if e.reason == "FailedScheduling"])
    assert failed[0].type == "Warning" and failed[0].message == cond.message
    # unrelated node churn does not repeat the event
    core.patch_node("worker-1", {"metadata": {"annotations": {"touched": str(time.time())}}})
    time.sleep(0.3)
    again = [e for e in events_for(core, namespace, "waiting") if e.reason == "FailedScheduling"]
    assert len(again) == 1 and (again[0].count or 1) == 1
    # a node gaining the label makes the pod schedulable
    core.patch_node("worker-1", {"metadata": {"labels": {"pool": label}}})
    try:
        assert wait_for(lambda: bound_node(core, namespace, "waiting")) == "worker-1"
    finally:
        core.patch_node("worker-1", {"metadata": {"labels": {"pool": None}}})


def test_a_host_port_is_held_once_per_node(core, nodes, namespace):
    """Pods share a vkcmd node's network: the NodePorts filter keeps a second pod asking for a held hostPort off."""
    def asking(name):
        body = pod_body(name, nodeSelector={"type": "virtual-kubelet"}, tolerations=[PROVIDER_TOLERATION])
        body["spec"]["containers"][0]["command"] = ["sleep", "600"]
        body["spec"]["containers"][0]["ports"] = [{"containerPort": 18089, "hostPort": 18089}]
        return body

    core.create_namespaced_pod(namespace, asking("first-port"))
    assert wait_for(lambda: bound_node(core, namespace, "first-port")) == "vk-1"
    core.create_namespaced_pod(namespace, asking("second-port"))

    def unschedulable():
        pod = core.read_namespaced_pod("second-port", namespace)
        return next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"
                     and c.reason == "Unschedulable"), None)

    cond = wait_for(unschedulable, what="second pod Unschedulable")
    assert "node(s) didn't have free ports for the requested pod ports" in cond.message
    assert bound_node(core, namespace, "second-port") is None


def test_other_scheduler_names_are_left_alone(core, nodes, namespace):
    core.create_namespaced_pod(namespace, pod_body("custom", schedulerName="my-scheduler"))
    time.sleep(0.3)
    assert bound_node(core, namespace, "custom") is None


def test_many_pods_spread_and_bind_fast(core, nodes, namespace):
    start = time.monotonic()
    for i in range(20):
        core.create_namespaced_pod(namespace, pod_body(f"many-{i}", tolerations=[PROVIDER_TOLERATION]))
    wait_for(lambda: all(p.spec.node_name for p in core.list_namespaced_pod(namespace).items), what="all bound")
    assert time.monotonic() - start < 5.0
    placed = [p.spec.node_name for p in core.list_namespaced_pod(namespace).items]
    assert set(placed) == {"worker-1", "vk-1"}  # least-loaded spreads them


# ---- deployments -------------------------------------------------------------------------

def deployment_body(name, replicas=3, image="server"):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "tick", "image": image,
                                                           "command": ["bash"]}]}}}}


def live_pods(core, ns, selector):
    return [p for p in core.list_namespaced_pod(ns, label_selector=selector).items
            if p.metadata.deletion_timestamp is None]


def mark_ready(core, ns, pod):
    t = now()
    core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {
        "phase": "Running", "startTime": t,
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t},
                       {"type": "ContainersReady", "status": "True", "lastTransitionTime": t}]}})


def test_deployment_replicaset_and_pods(core, apps, nodes, namespace):
    apps.create_namespaced_deployment(namespace, deployment_body("ticker"))
    rs = wait_for(lambda: apps.list_namespaced_replica_set(namespace).items, what="replicaset")[0]
    dep = apps.read_namespaced_deployment("ticker", namespace)
    digest = rs.metadata.labels["pod-template-hash"]
    assert rs.metadata.name == f"ticker-{digest}"
    ref = rs.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("Deployment", "ticker", dep.metadata.uid, True)
    assert rs.spec.selector.match_labels == {"app": "ticker", "pod-template-hash": digest}
    pods = wait_for(lambda: len(live_pods(core, namespace, "app=ticker")) == 3 and live_pods(core, namespace, "app=ticker"),
                    what="3 pods")
    for pod in pods:
        assert pod.metadata.name.startswith(f"{rs.metadata.name}-")
        assert pod.metadata.labels["pod-template-hash"] == digest
        owner = pod.metadata.owner_references[0]
        assert (owner.kind, owner.name, owner.uid, owner.controller) == ("ReplicaSet", rs.metadata.name,
                                                                        rs.metadata.uid, True)
        assert any(v.name.startswith("kube-api-access-") for v in pod.spec.volumes)  # admitted like any pod
    wait_for(lambda: all(bound_node(core, namespace, p.metadata.name) for p in pods), what="bound")

    def status():
        d = apps.read_namespaced_deployment("ticker", namespace)
        return d if d.status.replicas == 3 and d.status.updated_replicas == 3 else None

    d = wait_for(status, what="deployment status")
    assert d.status.observed_generation == d.metadata.generation
    assert not d.status.ready_replicas
    for pod in pods:
        mark_ready(core, namespace, pod)

    def ready():
        d = apps.read_namespaced_deployment("ticker", namespace)
        return d if d.status.ready_replicas == 3 and d.status.available_replicas == 3 else None

    d = wait_for(ready, what="ready replicas")
    conditions = {c.type: c for c in d.status.conditions}
    assert conditions["Available"].status == "True"
    assert conditions["Available"].reason == "MinimumReplicasAvailable"
    assert conditions["Progressing"].reason == "NewReplicaSetAvailable"
    rs = apps.read_namespaced_replica_set(rs.metadata.name, namespace)
    assert rs.status.ready_replicas == 3 and rs.status.available_replicas == 3


def test_deployment_keeps_count_and_follows_scale(core, apps, nodes, namespace):
    apps.create_namespaced_deployment(namespace, deployment_body("keeper", replicas=2))
    pods = wait_for(lambda: len(live_pods(core, namespace, "app=keeper")) == 2 and live_pods(core, namespace, "app=keeper"))
    victim = pods[0].metadata.name
    core.delete_namespaced_pod(victim, namespace, grace_period_seconds=0)
    wait_for(lambda: len(live_pods(core, namespace, "app=keeper")) == 2
             and victim not in {p.metadata.name for p in live_pods(core, namespace, "app=keeper")},
             what="replacement pod")
    # a failed pod is replaced too
    failed = live_pods(core, namespace, "app=keeper")[0].metadata.name
    core.patch_namespaced_pod_status(failed, namespace, {"status": {"phase": "Failed"}})
    wait_for(lambda: len([p for p in live_pods(core, namespace, "app=keeper") if p.status.phase != "Failed"]) == 2,
             what="replacement of failed pod")
    # the scale subresource, as the HPA writes it
    apps.patch_namespaced_deployment_scale("keeper", namespace, {"spec": {"replicas": 4}})
    wait_for(lambda: len([p for p in live_pods(core, namespace, "app=keeper") if p.status.phase != "Failed"]) == 4,
             what="scale up")
    apps.patch_namespaced_deployment_scale("keeper", namespace, {"spec": {"replicas": 1}})
    wait_for(lambda: len([p for p in live_pods(core, namespace, "app=keeper") if p.status.phase != "Failed"]) == 1,
             what="scale down")
    wait_for(lambda: apps.read_namespaced_deployment("keeper", namespace).status.replicas == 1,
             what="status replicas 1")


def test_scale_down_prefers_not_ready_pods(core, apps, nodes, namespace):
    apps.create_namespaced_deployment(namespace, deployment_body("picky", replicas=3))
    pods = wait_for(lambda: len(live_pods(core, namespace, "app=picky")) == 3 and live_pods(core, namespace, "app=picky"))
    wait_for(lambda: all(p.spec.node_name for p in live_pods(core, namespace, "app=picky")), what="bound")
    keep = pods[0].metadata.name
    mark_ready(core, namespace, pods[0])
    wait_for(lambda: apps.read_namespaced_replica_set(
        apps.list_namespaced_replica_set(namespace, label_selector="app=picky").items[0].metadata.name,
        namespace).status.ready_replicas == 1, what="rs ready 1")
    apps.patch_namespaced_deployment_scale("picky", namespace, {"spec": {"replicas": 1}})
    wait_for(lambda: [p.metadata.name for p in live_pods(core, namespace, "app=picky")] == [keep],
             what="ready pod kept")


def test_new_template_rolls_to_new_replicaset(core, apps, nodes, namespace):
    apps.create_namespaced_deployment(namespace, deployment_body("roller", replicas=2, image="v1"))
    first = wait_for(lambda: apps.list_namespaced_replica_set(namespace).items)[0]
    apps.patch_namespaced_deployment("roller", namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "tick", "image": "v2"}]}}}})

    def second_rs():
        sets = apps.list_namespaced_replica_set(namespace).items
        new = [rs for rs in sets if rs.metadata.name != first.metadata.name]
        return new[0] if new else None

    new = wait_for(second_rs, what="new replicaset")
    assert new.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    new_pods = wait_for(lambda: len(live_pods(core, namespace, f"pod-template-hash={new.metadata.labels['pod-template-hash']}")) == 2
                        and live_pods(core, namespace, f"pod-template-hash={new.metadata.labels['pod-template-hash']}"))
    assert all(p.spec.containers[0].image == "v2" for p in new_pods)
    for pod in new_pods:
        mark_ready(core, namespace, pod)
    wait_for(lambda: apps.read_namespaced_replica_set(first.metadata.name, namespace).spec.replicas == 0,
             what="old replicaset scaled to 0")
    wait_for(lambda: apps.read_namespaced_deployment("roller", namespace).status.updated_replicas == 2)


# ---- namespaces ------------------------------------------------------------------------------

def cluster_ca(kubeconfig):
    with open(kubeconfig) as fh:
        cfg = yaml.safe_load(fh)
    return base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()


def test_new_namespace_gets_account_and_root_ca(control_plane, core):
    if not control_plane.controllers_running:
        pytest.skip("control plane runs without controllers")
    name = f"fresh-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        def found(read):
            try:
                return read()
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

        wait_for(lambda: found(lambda: core.read_namespaced_service_account("default", name)), what="default SA")
        cm = wait_for(lambda: found(lambda: core.read_namespaced_config_map("kube-root-ca.crt", name)),
                      what="kube-root-ca.crt")
        assert cm.data == {"ca.crt": cluster_ca(control_plane.kubeconfig)}
        # both come back when deleted, and drift is corrected
        core.delete_namespaced_service_account("default", name)
        core.delete_namespaced_config_map("kube-root-ca.crt", name)
        wait_for(lambda: found(lambda: core.read_namespaced_service_account("default", name)), what="SA again")
        wait_for(lambda: found(lambda: core.read_namespaced_config_map("kube-root-ca.crt", name)), what="CM again")
        core.patch_namespaced_config_map("kube-root-ca.crt", name, {"data": {"ca.crt": "tampered"}})
        wait_for(lambda: core.read_namespaced_config_map("kube-root-ca.crt", name).data["ca.crt"]
                 == cluster_ca(control_plane.kubeconfig), what="CA restored")
        # a pod in the new namespace is admitted with the token volume
        wait_for(lambda: found(lambda: core.read_namespaced_service_account("default", name)))
        pod = core.create_namespaced_pod(name, pod_body("hello"))
        assert any(v.name.startswith("kube-api-access-") for v in pod.spec.volumes)
    finally:
        core.delete_namespace(name)


# ---- garbage collection ------------------------------------------------------------------------

def test_dependents_of_a_missing_owner_are_collected(core, apps, nodes, namespace):
    ghost = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ghost", "uid": str(uuid.uuid4()),
             "controller": True, "blockOwnerDeletion": True}
    body = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "orphan-rs", "ownerReferences": [ghost]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "orphan"}},
                     "template": {"metadata": {"labels": {"app": "orphan"}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    apps.create_namespaced_replica_set(namespace, body)
    owned = dict(body, metadata={"name": "owned-rs", "ownerReferences": [{
        **ghost, "name": "real", "uid": apps.create_namespaced_deployment(
            namespace, deployment_body("real", replicas=0)).metadata.uid}]})
    apps.create_namespaced_replica_set(namespace, owned)

    def gone():
        try:
            apps.read_namespaced_replica_set("orphan-rs", namespace)
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_for(gone, what="orphan collected")
    assert apps.read_namespaced_replica_set("owned-rs", namespace).metadata.name == "owned-rs"


def test_deleting_a_deployment_removes_replicasets_and_pods(core, apps, nodes, namespace):
    apps.create_namespaced_deployment(namespace, deployment_body("doomed", replicas=2))
    wait_for(lambda: len(live_pods(core, namespace, "app=doomed")) == 2)
    apps.delete_namespaced_deployment("doomed", namespace)
    wait_for(lambda: not apps.list_namespaced_replica_set(namespace, label_selector="app=doomed").items,
             what="replicasets gone")
    wait_for(lambda: not live_pods(core, namespace, "app=doomed"), what="pods gone or terminating")
