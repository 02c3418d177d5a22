"""CRUD semantics of kubelite through the real kubernetes client over HTTPS."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException


@pytest.fixture(scope="module")
def core(kube_client):
    return client.CoreV1Api(kube_client)


@pytest.fixture(scope="module")
def apps(kube_client):
    return client.AppsV1Api(kube_client)


ROOT_CA = "kube-root-ca.crt"  # published into every namespace by the controllers


def status_body(exc: ApiException) -> dict:
    return json.loads(exc.body)


def pod_body(name: str, **spec) -> dict:
    return {"metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "none", "command": ["sleep", "1"]}], **spec}}


def test_configmap_create_get_list_update_delete(core, namespace):
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm1"}, "data": {"a": "1"}})
    assert cm.metadata.uid and cm.metadata.creation_timestamp and int(cm.metadata.resource_version) > 0
    got = core.read_namespaced_config_map("cm1", namespace)
    assert got.data == {"a": "1"} and got.metadata.resource_version == cm.metadata.resource_version
    got.data["b"] = "2"
    updated = core.replace_namespaced_config_map("cm1", namespace, got)
    assert int(updated.metadata.resource_version) > int(cm.metadata.resource_version)
    items = core.list_namespaced_config_map(namespace).items
    assert [i.metadata.name for i in items if i.metadata.name != ROOT_CA] == ["cm1"]
    core.delete_namespaced_config_map("cm1", namespace)
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_config_map("cm1", namespace)
    assert ei.value.status == 404
    body = status_body(ei.value)
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'configmaps "cm1" not found', "reason": "NotFound",
                    "details": {"name": "cm1", "kind": "configmaps"}, "code": 404}


def test_resource_versions_are_global_and_increasing(core, namespace):
    a = core.create_namespaced_config_map(namespace, {"metadata": {"name": "a"}})
    b = core.create_namespaced_secret(namespace, {"metadata": {"name": "b"}})
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)
    lst = core.list_namespaced_config_map(namespace)
    assert int(lst.metadata.resource_version) >= int(b.metadata.resource_version)


def test_stale_put_conflicts(core, namespace):
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"v": "0"}})
    fresh = core.read_namespaced_config_map("cm", namespace)
    fresh.data["v"] = "1"
    core.replace_namespaced_config_map("cm", namespace, fresh)
    cm.data["v"] = "stale"
    with pytest.raises(ApiException) as ei:
        core.replace_namespaced_config_map("cm", namespace, cm)
    assert ei.value.status == 409
    body = status_body(ei.value)
    assert body["reason"] == "Conflict"
    assert body["message"] == ('Operation cannot be fulfilled on configmaps "cm": the object has been modified; '
                               "please apply your changes to the latest version and try again")


def test_duplicate_create_already_exists(core, namespace):
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dup"}})
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "dup"}})
    assert ei.value.status == 409
    assert status_body(ei.value)["reason"] == "AlreadyExists"
    assert status_body(ei.value)["message"] == 'configmaps "dup" already exists'


def test_invalid_objects_are_422_with_causes(core, namespace):
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "Bad_Name"}})
    body = status_body(ei.value)
    assert ei.value.status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert body["message"].startswith('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"')

    with pytest.raises(ApiException) as ei:
        core.create_namespaced_config_map(namespace, {"metadata": {}})
    body = status_body(ei.value)
    assert ei.value.status == 422
    assert body["details"]["causes"] == [{"reason": "FieldValueRequired", "field": "metadata.name",
                                          "message": "Required value: name or generateName is required"}]

    with pytest.raises(ApiException) as ei:
        core.create_namespaced_pod(namespace, {"metadata": {"name": "empty"}, "spec": {"containers": []}})
    body = status_body(ei.value)
    assert ei.value.status == 422
    assert any(c["field"] == "spec.containers" for c in body["details"]["causes"])


def test_create_in_missing_namespace_is_404(core):
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_config_map("no-such-ns", {"metadata": {"name": "x"}})
    assert ei.value.status == 404
    assert status_body(ei.value)["message"] == 'namespaces "no-such-ns" not found'


def test_delete_missing_namespace_is_404(core):
    with pytest.raises(ApiException) as ei:
        core.delete_namespace("never-was")
    assert ei.value.status == 404


def test_generate_name(core, namespace):
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "gen-"}})
    assert cm.metadata.name.startswith("gen-") and len(cm.metadata.name) == len("gen-") + 5


def test_secret_string_data_folded_into_data(core, namespace):
    s = core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"k": "v"},
                                                  "data": {"raw": base64.b64encode(b"\x00\x01").decode()}})
    assert s.string_data is None and s.type == "Opaque"
    assert base64.b64decode(s.data["k"]) == b"v" and base64.b64decode(s.data["raw"]) == b"\x00\x01"


def test_pod_defaults_and_status(core, namespace):
    pod = core.create_namespaced_pod(namespace, pod_body("p", restartPolicy="Never"))
    assert pod.status.phase == "Pending" and pod.status.qos_class == "BestEffort"
    assert pod.spec.restart_policy == "Never"
    assert pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.scheduler_name == "default-scheduler" and pod.spec.dns_policy == "ClusterFirst"
    c = pod.spec.containers[0]
    assert c.termination_message_path == "/dev/termination-log" and c.image_pull_policy == "Always"
    assert pod.spec.service_account_name == "default"


def test_label_and_field_selectors(core, namespace):
    core.create_namespaced_pod(namespace, pod_body("a"))
    core.create_namespaced_pod(namespace, pod_body("b", nodeName="n1"))
    names = [p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector="app=b").items]
    assert names == ["b"]
    names = [p.metadata.name for p in core.list_namespaced_pod(namespace, field_selector="spec.nodeName=n1").items]
    assert names == ["b"]
    names = [p.metadata.name for p in core.list_pod_for_all_namespaces(field_selector="spec.nodeName=").items
             if p.metadata.namespace == namespace]
    assert names == ["a"]
    with pytest.raises(ApiException) as ei:
        core.list_namespaced_pod(namespace, field_selector="spec.bogus=1")
    assert ei.value.status == 400


def test_patch_types(core, namespace):
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "p", "labels": {"a": "1"}},
                                                  "data": {"x": "1", "y": "2"}})
    # a dict body: the client sends a strategic merge patch
    cm = core.patch_namespaced_config_map("p", namespace, {"data": {"y": None, "z": "3"}})
    assert cm.data == {"x": "1", "z": "3"}
    # a list body: JSON patch
    cm = core.patch_namespaced_config_map("p", namespace, [{"op": "replace", "path": "/data/x", "value": "9"}])
    assert cm.data["x"] == "9"
    # RFC 7386 merge patch by content type
    cm = core.patch_namespaced_config_map("p", namespace, {"metadata": {"labels": {"b": "2"}}},
                                          _content_type="application/merge-patch+json")
    assert cm.metadata.labels == {"a": "1", "b": "2"}
    with pytest.raises(ApiException) as ei:
        core.patch_namespaced_config_map("p", namespace, [{"op": "test", "path": "/data/x", "value": "nope"}])
    assert ei.value.status in (409, 422)


def test_strategic_merge_patch_merges_containers_by_name(core, namespace):
    body = pod_body("smp")
    body["spec"]["containers"].append({"name": "d", "image": "none"})
    core.create_namespaced_pod(namespace, body)
    pod = core.patch_namespaced_pod("smp", namespace, {"spec": {"containers": [{"name": "d", "image": "other"}]}})
    assert [(c.name, c.image) for c in pod.spec.containers] == [("c", "none"), ("d", "other")]


def test_patch_with_stale_resource_version_conflicts(core, namespace):
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "rvp"}})
    core.patch_namespaced_config_map("rvp", namespace, {"data": {"a": "1"}})
    with pytest.raises(ApiException) as ei:
        core.patch_namespaced_config_map("rvp", namespace, {"metadata": {"resourceVersion":
                                                                         cm.metadata.resource_version},
                                                            "data": {"a": "2"}})
    assert ei.value.status == 409


def test_noop_update_keeps_resource_version(core, namespace):
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "same"}, "data": {"a": "1"}})
    again = core.patch_namespaced_config_map("same", namespace, {"data": {"a": "1"}})
    assert again.metadata.resource_version == cm.metadata.resource_version


def test_status_subresource_isolation(core, namespace):
    core.create_namespaced_pod(namespace, pod_body("st"))
    # the status subresource ignores spec changes
    pod = core.patch_namespaced_pod_status("st", namespace, {"spec": {"activeDeadlineSeconds": 5},
                                                             "status": {"phase": "Running", "podIP": "10.0.0.1"}})
    assert pod.status.phase == "Running" and pod.status.pod_ip == "10.0.0.1"
    assert pod.spec.active_deadline_seconds is None
    # the main resource ignores status changes
    pod = core.patch_namespaced_pod("st", namespace, {"metadata": {"labels": {"x": "y"}},
                                                      "status": {"phase": "Failed"}})
    assert pod.status.phase == "Running" and pod.metadata.labels["x"] == "y"


@pytest.fixture(scope="module")
def bare_apps(tmp_path_factory):
    """AppsV1Api on a control plane without controllers: nothing else writes Deployment status."""
    import kubernetes

    from tools.kubelite import ControlPlane

    with ControlPlane(str(tmp_path_factory.mktemp("bare")), controllers=False) as plane:
        client = kubernetes.config.new_client_from_config(plane.kubeconfig)
        yield kubernetes.client.AppsV1Api(client)
        client.close()


def test_deployment_status_isolation_generation_and_scale(bare_apps):
    apps, namespace = bare_apps, "default"
    dep = {"metadata": {"name": "d"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d"}},
                                 "spec": {"containers": [{"name": "c", "image": "none"}]}}}}
    d = apps.create_namespaced_deployment(namespace, dep)
    assert d.metadata.generation == 1 and d.spec.strategy.type == "RollingUpdate"
    d = apps.patch_namespaced_deployment_status("d", namespace, {"status": {"replicas": 2, "observedGeneration": 1}})
    assert d.status.replicas == 2 and d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("d", namespace, {"spec": {"replicas": 3}, "status": {"replicas": 7}})
    assert d.metadata.generation == 2 and d.status.replicas == 2 and d.spec.replicas == 3
    scale = apps.read_namespaced_deployment_scale("d", namespace)
    assert scale.spec.replicas == 3 and scale.status.selector == "app=d"
    scale = apps.patch_namespaced_deployment_scale("d", namespace, {"spec": {"replicas": 5}})
    assert scale.spec.replicas == 5
    assert apps.read_namespaced_deployment("d", namespace).spec.replicas == 5


def test_deployment_selector_must_match_template(apps, namespace):
    dep = {"metadata": {"name": "bad"},
           "spec": {"selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "y"}},
                                 "spec": {"containers": [{"name": "c", "image": "none"}]}}}}
    with pytest.raises(ApiException) as ei:
        apps.create_namespaced_deployment(namespace, dep)
    assert ei.value.status == 422


def test_binding_sets_node_once(core, namespace):
    core.create_namespaced_pod(namespace, pod_body("b1", schedulerName="nobody"))  # keep the scheduler out
    core.create_namespaced_pod_binding("b1", namespace, {"metadata": {"name": "b1"},
                                                         "target": {"kind": "Node", "name": "n1"}},
                                       _preload_content=False)
    pod = core.read_namespaced_pod("b1", namespace)
    assert pod.spec.node_name == "n1"
    assert any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions)
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_pod_binding("b1", namespace, {"metadata": {"name": "b1"},
                                                             "target": {"kind": "Node", "name": "n2"}},
                                           _preload_content=False)
    assert ei.value.status == 409
    assert "already assigned to node" in status_body(ei.value)["message"]


def test_pod_spec_is_immutable(core, namespace):
    core.create_namespaced_pod(namespace, pod_body("imm"))
    with pytest.raises(ApiException) as ei:
        core.patch_namespaced_pod("imm", namespace, {"spec": {"restartPolicy": "Never"}})
    assert ei.value.status == 422


def test_namespace_deletion_removes_contents(core, kube_client):
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "cm"}})
    core.create_namespaced_secret("doomed", {"metadata": {"name": "s"}})
    core.delete_namespace("doomed")
    with pytest.raises(ApiException) as ei:
        core.read_namespace("doomed")
    assert ei.value.status == 404
    assert [c for c in core.list_config_map_for_all_namespaces().items if c.metadata.namespace == "doomed"] == []


def test_namespace_with_graceful_pod_terminates_until_pod_gone(core, ensure_sa):
    core.create_namespace({"metadata": {"name": "slow"}})
    ensure_sa("slow")
    core.create_namespaced_pod("slow", pod_body("bound", nodeName="n1"))
    core.delete_namespace("slow")
    ns = core.read_namespace("slow")
    assert ns.status.phase == "Terminating"
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_config_map("slow", {"metadata": {"name": "late"}})
    assert ei.value.status == 403
    pod = core.read_namespaced_pod("bound", "slow")
    assert pod.metadata.deletion_timestamp is not None
    core.delete_namespaced_pod("bound", "slow", grace_period_seconds=0)
    with pytest.raises(ApiException):
        core.read_namespace("slow")


def test_replicaset_deletion_cascades_to_owned_pods(core, apps, namespace):
    rs = apps.create_namespaced_replica_set(namespace, {
        "metadata": {"name": "rs"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "rs"}},
                 "template": {"metadata": {"labels": {"app": "rs"}},
                              "spec": {"containers": [{"name": "c", "image": "none"}]}}}})
    owned = pod_body("owned")
    owned["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                             "uid": rs.metadata.uid, "controller": True}]
    core.create_namespaced_pod(namespace, owned)
    core.create_namespaced_pod(namespace, pod_body("free"))
    apps.delete_namespaced_replica_set("rs", namespace)
    names = [p.metadata.name for p in core.list_namespaced_pod(namespace).items]
    assert names == ["free"]


def test_leases(kube_client, namespace):
    coord = client.CoordinationV1Api(kube_client)
    lease = coord.create_namespaced_lease(namespace, {"metadata": {"name": "n1"},
                                                      "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}})
    lease.spec.renew_time = "2024-01-01T00:00:00.000000Z"
    renewed = coord.replace_namespaced_lease("n1", namespace, lease)
    assert renewed.spec.renew_time is not None
    assert int(renewed.metadata.resource_version) > int(lease.metadata.resource_version)


def test_events_with_involved_object_selector(core, namespace):
    for name in ("a", "b"):
        core.create_namespaced_event(namespace, {
            "metadata": {"name": f"{name}.1"}, "involvedObject": {"kind": "Pod", "name": name,
                                                                  "namespace": namespace},
            "reason": "Started", "message": "hi", "type": "Normal", "count": 1})
    evs = core.list_namespaced_event(namespace, field_selector="involvedObject.name=a").items
    assert [e.metadata.name for e in evs] == ["a.1"]
    ev_api = client.EventsV1Api(core.api_client)
    ev_api.create_namespaced_event(namespace, {"metadata": {"name": "n.1"}, "eventTime": "2024-01-01T00:00:00.000000Z",
                                               "reportingController": "x", "reportingInstance": "y",
                                               "action": "Do", "reason": "R", "type": "Normal"})
    assert [e.metadata.name for e in ev_api.list_namespaced_event(namespace).items] == ["n.1"]


def test_cluster_scoped_rbac_objects(kube_client):
    rbac = client.RbacAuthorizationV1Api(kube_client)
    names = {r.metadata.name for r in rbac.list_cluster_role().items}
    assert {"cluster-admin", "system:kubelet-api-admin"} <= names
    crb = rbac.read_cluster_role_binding("kube-apiserver-kubelet-client")
    assert crb.role_ref.name == "system:kubelet-api-admin"
    assert crb.subjects[0].name == "kube-apiserver-kubelet-client"


def test_dry_run_does_not_store(core, namespace):
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dry"}}, dry_run="All")
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dry", namespace)


def test_quantities_read_back_in_canonical_form(kube_client, namespace):
    """As kube-apiserver stores them: pods "1000" -> "1k", "0.5" cpu -> "500m", "1024Mi" -> "1Gi"."""
    core = client.CoreV1Api(kube_client)
    name = f"quant-{namespace}"
    core.create_node({"metadata": {"name": name}})
    try:
        core.patch_node_status(name, {"status": {"capacity": {"pods": "1000", "cpu": "4", "memory": "16384000Ki"},
                                                 "allocatable": {"pods": "1000", "cpu": "3500m",
                                                                 "memory": "1024Mi"}}})
        status = core.read_node(name).status
        assert status.capacity == {"pods": "1k", "cpu": "4", "memory": "16000Mi"}
        assert status.allocatable == {"pods": "1k", "cpu": "3500m", "memory": "1Gi"}
    finally:
        core.delete_node(name)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "q"}, "spec": {"containers": [{
        "name": "c", "image": "x", "resources": {"requests": {"cpu": "0.5", "memory": "1.5Gi"},
                                                 "limits": {"cpu": "2000m", "memory": "2048Mi"}}}]}})
    res = core.read_namespaced_pod("q", namespace).spec.containers[0].resources
    assert res.requests == {"cpu": "500m", "memory": "1536Mi"}
    assert res.limits == {"cpu": "2", "memory": "2Gi"}


def test_list_pages_with_limit_and_continue(kube_client, namespace, control_plane):
    core = client.CoreV1Api(kube_client)
    for i in range(5):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"page-{i}"}})
    total = len(core.list_namespaced_config_map(namespace).items)
    seen, token, pages = [], None, 0
    while True:
        kwargs = {"_continue": token} if token else {}
        got = core.list_namespaced_config_map(namespace, limit=2, **kwargs)
        pages += 1
        assert len(got.items) <= 2
        seen += [c.metadata.name for c in got.items]
        token = got.metadata._continue
        if not token:
            break
        assert got.metadata.remaining_item_count == total - len(seen)
    assert sorted(n for n in seen if n.startswith("page-")) == [f"page-{i}" for i in range(5)]
    assert len(seen) == len(set(seen)) == total and pages == (total + 1) // 2
    bad = base64.urlsafe_b64encode(json.dumps({"rv": 1, "start": ["", ""]}).encode()).decode()
    bucket = control_plane.store._bucket("configmaps")
    floor, bucket.floor = bucket.floor, 10 ** 9  # as after a compaction
    try:
        with pytest.raises(ApiException) as ei:
            core.list_namespaced_config_map(namespace, limit=2, _continue=bad)
        assert ei.value.status == 410
    finally:
        bucket.floor = floor
