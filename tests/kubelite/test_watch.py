"""Watches through the real kubernetes client: resourceVersion replay, 410 Gone, selectors, fan-out."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tools.kubelite import ControlPlane


ROOT_CA = "kube-root-ca.crt"  # published into every namespace by the controllers


@pytest.fixture(scope="module")
def core(kube_client):
    return client.CoreV1Api(kube_client)


def events(core, namespace, n, **kw):
    """The first ``n`` (type, name) pairs of a configmap watch."""
    w = watch.Watch()
    out = []
    for ev in w.stream(core.list_namespaced_config_map, namespace, timeout_seconds=10, **kw):
        if ev["object"].metadata.name == ROOT_CA:
            continue
        out.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
        if len(out) == n:
            w.stop()
    return out


def test_watch_from_resource_version_replays_in_order(core, namespace):
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "w1"}})
    core.patch_namespaced_config_map("w1", namespace, {"data": {"a": "1"}})
    core.delete_namespaced_config_map("w1", namespace)
    got = events(core, namespace, 3, resource_version=rv)
    assert [(t, n) for t, n, _ in got] == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    rvs = [int(r) for _, _, r in got]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)


def test_watch_without_resource_version_starts_with_current_state(core, namespace):
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "x1"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "x2"}})
    got = events(core, namespace, 2)
    assert sorted((t, n) for t, n, _ in got) == [("ADDED", "x1"), ("ADDED", "x2")]


def test_watch_sees_live_changes(core, namespace):
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    result = []
    t = threading.Thread(target=lambda: result.extend(events(core, namespace, 2, resource_version=rv)))
    t.start()
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "live"}})
    core.delete_namespaced_config_map("live", namespace)
    t.join(10)
    assert [(t_, n) for t_, n, _ in result] == [("ADDED", "live"), ("DELETED", "live")]


def test_field_selector_watch_turns_leaving_into_deleted(core, namespace):
    core.create_namespaced_pod(namespace, {"metadata": {"name": "fp"},  # no scheduler writes in between
                                           "spec": {"schedulerName": "nobody",
                                                    "containers": [{"name": "c", "image": "none"}]}})
    rv = core.list_namespaced_pod(namespace).metadata.resource_version
    core.patch_namespaced_pod_status("fp", namespace, {"status": {"phase": "Running"}})
    core.patch_namespaced_pod_status("fp", namespace, {"status": {"phase": "Succeeded"}})
    w = watch.Watch()
    got = []
    for ev in w.stream(core.list_namespaced_pod, namespace, resource_version=rv,
                       field_selector="status.phase=Running", timeout_seconds=10):
        got.append((ev["type"], ev["object"].status.phase))
        if len(got) == 2:
            w.stop()
    assert got == [("ADDED", "Running"), ("DELETED", "Succeeded")]


def test_watch_timeout_ends_stream(core, namespace):
    w = watch.Watch()
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    got = [e for e in w.stream(core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=1)
           if e["object"].metadata.name != ROOT_CA]
    assert got == []


def test_many_watchers_all_see_one_event(core, namespace):
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    n = 40
    seen = []
    lock = threading.Lock()
    ready = threading.Barrier(n + 1)

    def one():
        w = watch.Watch()
        ready.wait()
        for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=10):
            if ev["object"].metadata.name == ROOT_CA:
                continue
            with lock:
                seen.append(ev["object"].metadata.name)
            w.stop()

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    ready.wait()
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "fan"}})
    for t in threads:
        t.join(15)
    assert seen == ["fan"] * n


def test_expired_resource_version_is_410_and_bookmarks(tmp_path):
    with ControlPlane(str(tmp_path), controllers=False, watch_history=5, bookmark_interval=0.2) as cp:
        api_client = config.new_client_from_config(config_file=cp.kubeconfig)
        try:
            core = client.CoreV1Api(api_client)
            first = core.create_namespaced_config_map("default", {"metadata": {"name": "c0"}})
            for i in range(1, 10):
                core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
            w = watch.Watch()
            with pytest.raises(ApiException) as ei:
                for _ in w.stream(core.list_namespaced_config_map, "default",
                                  resource_version=first.metadata.resource_version, timeout_seconds=5):
                    pass
            assert ei.value.status == 410
            assert "too old resource version" in ei.value.reason
            # a recent one still works
            rv = core.list_namespaced_config_map("default").metadata.resource_version
            assert list(w.stream(core.list_namespaced_config_map, "default", resource_version=rv,
                                 timeout_seconds=1)) == []
            # an idle watch that allows bookmarks gets them, carrying the current resourceVersion
            marks = list(w.stream(core.list_namespaced_config_map, "default", resource_version=rv,
                                  allow_watch_bookmarks=True, timeout_seconds=1))
            assert marks and {m["type"] for m in marks} == {"BOOKMARK"}
            assert int(marks[-1]["raw_object"]["metadata"]["resourceVersion"]) >= int(rv)
        finally:
            api_client.close()
