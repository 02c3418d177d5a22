"""What the stats need of the pods (``PodTable.stats_pods``): handed out without a copy per call, the
same tuple while nothing of it changed, a new one (in the order of ``pods()``) when a pod comes, goes,
or its startTime or containers change - and a malformed pod never breaks the table."""

from __future__ import annotations

from vkcmd.provider.podtable import PodTable, StatsPod
from vkcmd.provider.records import new_record


def pod(uid: str, name: str, *containers: str, started: str | None = None) -> dict:
    return {"metadata": {"uid": uid, "namespace": "ns", "name": name},
            "spec": {"containers": [{"name": c, "command": ["sleep", "1"]} for c in containers]},
            "status": {"startTime": started} if started else {}}


def admit(table: PodTable, body: dict):
    made = []
    assert table.admit(body, lambda: made.append(new_record(body, 0.0, ())) or made[0])
    return made[0] if made else None


def view(table: PodTable) -> list[tuple]:
    return [(p["metadata"]["uid"], p["metadata"]["name"], p["status"].get("startTime"),
             tuple(c["name"] for c in p["spec"]["containers"])) for p in table.pods()]


def test_the_same_view_while_nothing_the_stats_need_changed():
    table = PodTable()
    first = admit(table, pod("u1", "a", "c"))
    admit(table, pod("u2", "b", "c", "d", started="2026-12-02T04:00:00Z"))
    shown = table.stats_pods()
    assert shown == (StatsPod("u1", "ns", "a", None, ("c",)),
                     StatsPod("u2", "ns", "b", "2026-12-02T04:00:00Z", ("c", "d")))
    assert table.stats_pods() is shown
    table.swap_status(first, {"phase": "Pending", "conditions": []})   # a status without startTime: same figures
    assert table.stats_pods() is shown
    table.swap_status(first, {"phase": "Running", "startTime": "2026-12-02T04:00:01Z"})
    started = table.stats_pods()
    assert started is not shown and started[1] is shown[1]             # only the changed entry is new
    assert [(p.uid, p.name, p.start_time, p.containers) for p in started] == view(table)
    admit(table, pod("u2", "b", "c", started="2026-12-02T04:00:00Z"))   # the API's object changed
    assert table.stats_pods()[1].containers == ("c",)
    assert [(p.uid, p.name, p.start_time, p.containers) for p in table.stats_pods()] == view(table)


def test_a_pod_dropped_leaves_the_view_and_a_stale_record_changes_nothing():
    table = PodTable()
    record = admit(table, pod("u1", "a", "c"))
    admit(table, pod("u2", "b", "c"))
    assert table.drop(record, cleaned=True) is None
    shown = table.stats_pods()
    assert [p.uid for p in shown] == ["u2"] == [p["metadata"]["uid"] for p in table.pods()]
    table.swap_status(record, {"phase": "Succeeded", "startTime": "2026-12-02T04:00:00Z"})  # a late sync
    assert table.stats_pods() is shown


def test_a_container_without_a_name_is_left_out():
    table = PodTable()
    body = pod("u1", "a", "c")
    body["spec"]["containers"].append({"command": ["true"]})
    table.admit(body, lambda: new_record(pod("u1", "a", "c"), 0.0, ()))
    table.admit(body, lambda: None)        # the record exists: its pod replaced by the malformed one
    assert table.stats_pods()[0].containers == ("c",)
