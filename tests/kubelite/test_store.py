"""White-box checks of the in-memory store: resourceVersions, conflicts, history, watch fan-out."""

from __future__ import annotations

import json
import threading

import pytest

from tools.kubelite.errors import ApiError
from tools.kubelite.store import Store


def cm(name, ns="ns", **data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


def test_create_replace_remove_and_versions():
    s = Store()
    a = s.create("configmaps", cm("a"))
    b = s.create("secrets", cm("b"))
    assert b.rv == a.rv + 1 and a.obj["metadata"]["uid"] != b.obj["metadata"]["uid"]
    assert json.loads(a.raw) == a.obj
    with pytest.raises(ApiError) as ei:
        s.create("configmaps", cm("a"))
    assert ei.value.code == 409 and ei.value.reason == "AlreadyExists"
    new = json.loads(a.raw)
    new["data"] = {"x": "1"}
    a2 = s.replace("configmaps", "ns", "a", new, expect_rv=a.rv)
    assert a2.rv > b.rv and a2.obj["metadata"]["uid"] == a.obj["metadata"]["uid"]
    with pytest.raises(ApiError) as ei:
        s.replace("configmaps", "ns", "a", json.loads(a.raw), expect_rv=a.rv)
    assert ei.value.code == 409 and ei.value.reason == "Conflict"
    gone = s.remove("configmaps", "ns", "a")
    assert gone.rv > a2.rv and s.get("configmaps", "ns", "a") is None
    with pytest.raises(ApiError) as ei:
        s.remove("configmaps", "ns", "a")
    assert ei.value.code == 404


def test_generation_bumps_only_on_spec_change():
    s = Store()
    e = s.create("deployments", {"metadata": {"name": "d", "namespace": "ns"}, "spec": {"replicas": 1}})
    assert e.obj["metadata"]["generation"] == 1
    new = json.loads(e.raw)
    new["status"] = {"replicas": 1}
    e = s.replace("deployments", "ns", "d", new)
    assert e.obj["metadata"]["generation"] == 1
    new = json.loads(e.raw)
    new["spec"]["replicas"] = 2
    assert s.replace("deployments", "ns", "d", new).obj["metadata"]["generation"] == 2


def test_watch_replays_after_rv_and_filters_namespace():
    s = Store()
    start = s.resource_version
    s.create("configmaps", cm("a", "x"))
    s.create("configmaps", cm("b", "y"))
    w, initial = s.watch("configmaps", "y", start)
    assert [(e.type, e.obj["metadata"]["name"]) for e in initial] == [("ADDED", "b")]
    s.create("configmaps", cm("c", "x"))
    s.create("configmaps", cm("d", "y"))
    ev = w.next(1)
    assert ev.obj["metadata"]["name"] == "d" and ev.line.startswith(b'{"type":"ADDED","object":{')
    assert w.next(0) is None
    w.close()


def test_history_eviction_is_gone():
    s = Store(history=3)
    start = s.resource_version
    for i in range(5):
        s.create("configmaps", cm(f"c{i}"))
    with pytest.raises(ApiError) as ei:
        s.watch("configmaps", None, start)
    assert ei.value.code == 410 and ei.value.message.startswith("too old resource version")
    w, initial = s.watch("configmaps", None, s.resource_version - 2)
    assert [e.obj["metadata"]["name"] for e in initial] == ["c3", "c4"]
    w.close()


def test_concurrent_writers_fan_out_in_order_to_many_watchers():
    s = Store()
    watchers = [s.watch("pods", None, s.resource_version)[0] for _ in range(100)]

    def writer(k):
        for i in range(50):
            s.create("pods", {"metadata": {"name": f"p{k}-{i}", "namespace": "ns"}})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.count("pods") == 400
    lines = []
    for w in watchers:
        evs = []
        while (ev := w.next(0)) is not None:
            evs.append(ev)
        assert len(evs) == 400 and [e.rv for e in evs] == sorted(e.rv for e in evs)
        lines.append(evs[0].line)
        w.close()
    # the wire form is encoded once and shared by every watcher
    assert all(line is lines[0] for line in lines)


def test_slow_watcher_is_closed_not_buffered_forever():
    s = Store(max_backlog=10)
    w, _ = s.watch("configmaps", None, s.resource_version)
    for i in range(20):
        s.create("configmaps", cm(f"c{i}"))
    n = 0
    with pytest.raises(EOFError):
        while True:
            if w.next(0) is not None:
                n += 1
    assert n == 10


def test_close_ends_watches():
    s = Store()
    w, _ = s.watch("configmaps", None, None)
    threading.Timer(0.1, s.close).start()
    with pytest.raises(EOFError):
        w.next(5)
    with pytest.raises(ApiError):
        s.watch("configmaps", None, None)
