"""Graceful pod deletion and finalizers, as the apiserver does them."""

from __future__ import annotations

import calendar
import json
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException


@pytest.fixture(scope="module")
def core(kube_client):
    return client.CoreV1Api(kube_client)


def make_pod(core, namespace, name, node=None, grace=None):
    spec = {"containers": [{"name": "c", "image": "none"}]}
    if node:
        spec["nodeName"] = node
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return core.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": spec})


def gone(core, namespace, name) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
        return False
    except ApiException as e:
        assert e.status == 404
        return True


def test_bound_pod_gets_deletion_timestamp_and_stays(core, namespace):
    make_pod(core, namespace, "g1", node="n1")
    before = time.time()
    core.delete_namespaced_pod("g1", namespace)
    pod = core.read_namespaced_pod("g1", namespace)
    assert pod.metadata.deletion_grace_period_seconds == 30
    ts = calendar.timegm(pod.metadata.deletion_timestamp.utctimetuple())
    assert before + 28 <= ts <= time.time() + 31
    # a later delete may shorten the grace period but never lengthen it
    core.delete_namespaced_pod("g1", namespace, grace_period_seconds=60)
    assert core.read_namespaced_pod("g1", namespace).metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("g1", namespace, grace_period_seconds=5)
    assert core.read_namespaced_pod("g1", namespace).metadata.deletion_grace_period_seconds == 5
    # the kubelet's final delete
    core.delete_namespaced_pod("g1", namespace, grace_period_seconds=0)
    assert gone(core, namespace, "g1")


def test_grace_defaults_to_the_pod_spec(core, namespace):
    make_pod(core, namespace, "g2", node="n1", grace=7)
    core.delete_namespaced_pod("g2", namespace)
    assert core.read_namespaced_pod("g2", namespace).metadata.deletion_grace_period_seconds == 7


def test_unbound_pod_goes_at_once(core, namespace):
    make_pod(core, namespace, "u1")
    core.delete_namespaced_pod("u1", namespace)
    assert gone(core, namespace, "u1")


def test_terminal_pod_goes_at_once(core, namespace):
    make_pod(core, namespace, "t1", node="n1")
    core.patch_namespaced_pod_status("t1", namespace, {"status": {"phase": "Succeeded"}})
    core.delete_namespaced_pod("t1", namespace)
    assert gone(core, namespace, "t1")


def test_watch_sees_modified_then_deleted(core, namespace):
    make_pod(core, namespace, "w1", node="n1")
    rv = core.list_namespaced_pod(namespace).metadata.resource_version
    core.delete_namespaced_pod("w1", namespace)
    core.delete_namespaced_pod("w1", namespace, grace_period_seconds=0)
    w = watch.Watch()
    got = []
    for ev in w.stream(core.list_namespaced_pod, namespace, resource_version=rv, timeout_seconds=5):
        got.append((ev["type"], ev["object"].metadata.deletion_timestamp is not None))
        if len(got) == 2:
            w.stop()
    assert got == [("MODIFIED", True), ("DELETED", True)]


def test_delete_preconditions(core, namespace):
    make_pod(core, namespace, "pc")
    with pytest.raises(ApiException) as ei:
        core.delete_namespaced_pod("pc", namespace, body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid="not-the-uid")))
    assert ei.value.status == 409
    assert "Precondition failed: UID in precondition" in json.loads(ei.value.body)["message"]


def test_finalizers_hold_the_object(core, namespace):
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "fin", "finalizers": ["example.com/x"]}})
    core.delete_namespaced_config_map("fin", namespace)
    cm = core.read_namespaced_config_map("fin", namespace)
    assert cm.metadata.deletion_timestamp is not None and cm.metadata.finalizers == ["example.com/x"]
    core.patch_namespaced_config_map("fin", namespace, {"metadata": {"finalizers": None}},
                                     _content_type="application/merge-patch+json")
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_config_map("fin", namespace)
    assert ei.value.status == 404


def test_eviction_deletes_gracefully(core, namespace):
    make_pod(core, namespace, "ev", node="n1")
    core.create_namespaced_pod_eviction("ev", namespace, {"metadata": {"name": "ev", "namespace": namespace}},
                                        _preload_content=False)
    assert core.read_namespaced_pod("ev", namespace).metadata.deletion_timestamp is not None
