"""/stats/summary from usage snapshots: shape, rates between snapshots, monotonic and positive CPU, caching."""

from __future__ import annotations

import json
import threading
import time

from vkcmd.kubeletapi.backend import ContainerUsage, NodeUsage, PodUsage, UsageSnapshot
from vkcmd.kubeletapi.summary import CpuRates, StatsMemo, StatsSource, compute, encode, rfc3339, to_json

NODE = NodeUsage(start_time=1_700_000_000.0, cpu_seconds=5000.0, memory_working_set_bytes=2_000_000_000,
                 memory_rss_bytes=1_500_000_000, memory_usage_bytes=3_000_000_000,
                 memory_available_bytes=6_000_000_000)


def container(name="c", run="r1", cpu=2.0, memory=10_000_000, start=1_700_000_100.0, limit=None, processes=1):
    return ContainerUsage(name=name, run_id=run, start_time=start, cpu_seconds=cpu, memory_working_set_bytes=memory,
                          memory_rss_bytes=memory, memory_usage_bytes=memory + 1000, process_count=processes,
                          memory_limit_bytes=limit)


def snapshot(at, *containers, node=NODE):
    return UsageSnapshot(at, node, (PodUsage("ns", "p", "uid-1", 1_700_000_050.0, tuple(containers)),))


def test_json_shape():
    rates = CpuRates()
    stats = compute("node-1", snapshot(1_700_000_200.0, container(limit=50_000_000),
                                       container("d", "r2", processes=3)), rates)
    document = to_json(stats)
    node = document["node"]
    assert node["nodeName"] == "node-1" and node["startTime"] == "2023-11-14T22:13:20Z"
    assert node["cpu"] == {"time": "2023-11-14T22:16:40Z", "usageNanoCores": node["cpu"]["usageNanoCores"],
                           "usageCoreNanoSeconds": 5_000_000_000_000}
    assert node["memory"] == {"time": "2023-11-14T22:16:40Z", "availableBytes": 6_000_000_000,
                              "usageBytes": 3_000_000_000, "workingSetBytes": 2_000_000_000,
                              "rssBytes": 1_500_000_000}
    [pod] = document["pods"]
    assert pod["podRef"] == {"name": "p", "namespace": "ns", "uid": "uid-1"}
    assert pod["startTime"] == rfc3339(1_700_000_050.0)
    first, second = pod["containers"]
    assert first["name"] == "c" and first["startTime"] == rfc3339(1_700_000_100.0)
    assert first["cpu"]["usageCoreNanoSeconds"] == 2_000_000_000
    assert first["cpu"]["usageNanoCores"] == 20_000_000  # first sample: 2 s over the 100 s since start
    assert first["memory"]["availableBytes"] == 40_000_000 and "availableBytes" not in second["memory"]
    assert pod["cpu"]["usageCoreNanoSeconds"] == 4_000_000_000
    assert pod["memory"]["workingSetBytes"] == 20_000_000
    assert pod["process_stats"] == {"process_count": 4}


def test_usage_nano_cores_from_two_snapshots_of_the_same_run():
    rates = CpuRates()
    compute("n", snapshot(1000.0, container(cpu=2.0, start=900.0)), rates)
    stats = compute("n", snapshot(1010.0, container(cpu=7.0, start=900.0)), rates)
    usage = stats.pods[0].containers[0].usage
    assert usage.usage_nano_cores == 500_000_000  # 5 CPU-seconds in 10 s: half a core
    assert usage.usage_core_nano_seconds == 7_000_000_000


def test_a_restart_is_a_new_series_and_ended_runs_are_forgotten():
    rates = CpuRates()
    compute("n", snapshot(1000.0, container(cpu=50.0, run="old", start=900.0)), rates)
    stats = compute("n", snapshot(1010.0, container(cpu=1.0, run="new", start=1005.0)), rates)
    usage = stats.pods[0].containers[0].usage
    assert usage.usage_core_nano_seconds == 1_000_000_000  # not clamped to the old run's 50 s
    assert usage.usage_nano_cores == 200_000_000
    assert len(rates) == 2  # "new" and the node; "old" is gone


def test_cpu_never_goes_down_or_reaches_zero():
    rates = CpuRates()
    compute("n", snapshot(1000.0, container(cpu=3.0, start=900.0)), rates)
    # a child process of the run exited and took its CPU time with it
    stats = compute("n", snapshot(1001.0, container(cpu=1.0, start=900.0)), rates)
    assert stats.pods[0].containers[0].usage.usage_core_nano_seconds == 3_000_000_000
    assert stats.pods[0].containers[0].usage.usage_nano_cores == 0
    fresh = compute("n", snapshot(1002.0, container(cpu=0.0, run="fresh", start=1002.0)), rates)
    assert fresh.pods[0].containers[0].usage.usage_core_nano_seconds >= 1


def test_stats_source_measures_once_per_ttl():
    calls, now = [], [100.0]

    def usage():
        calls.append(1)
        time.sleep(0.05)
        return snapshot(1000.0 + len(calls), container(start=900.0))

    source = StatsSource("n", usage, ttl=1.0, clock=lambda: now[0])
    threads = [threading.Thread(target=source.get) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    rendered = [source.render("x", lambda s: object()) for _ in range(3)]
    assert rendered[0] is rendered[1] is rendered[2]
    now[0] += 1.0
    source.get()
    assert len(calls) == 2
    assert source.render("x", lambda s: object()) is not rendered[0]


def test_encode_gives_the_bytes_of_json_dumps_of_to_json():
    pods = (PodUsage("ns", 'we"ird\\ näme', "uid-1", 1_700_000_050.0,
                     (container(limit=50_000_000), container("d\n", "r2", processes=3))),
            PodUsage("ns", "empty", "uid-2", 1_700_000_060.0, ()))
    stats = compute("node-ü", UsageSnapshot(1_700_000_200.0, NODE, pods), CpuRates())
    assert encode(stats) == json.dumps(to_json(stats), separators=(",", ":")).encode()
    assert json.loads(encode(stats)) == to_json(stats)


def test_a_container_measured_by_an_earlier_scan_carries_that_scans_time():
    rates = CpuRates()
    scanned = ContainerUsage("c", "r1", 900.0, 2.0, 10, 10, 10, timestamp=995.0)
    stats = compute("n", UsageSnapshot(1000.0, NODE, (PodUsage("ns", "p", "u", 900.0, (scanned,)),)), rates)
    [pod] = stats.pods
    assert pod.containers[0].usage.time == 995.0 and pod.usage.time == 995.0
    assert stats.node.usage.time == 1000.0
    assert pod.containers[0].usage.usage_nano_cores == 2 * 10**9 // 95  # since the start, to the scan


def test_the_same_scan_served_twice_keeps_its_rate():
    rates = CpuRates()

    def at_scan(request_time, scan_time, cpu):
        measured = ContainerUsage("c", "r1", 900.0, cpu, 10, 10, 10, timestamp=scan_time)
        snap = UsageSnapshot(request_time, NODE, (PodUsage("ns", "p", "u", 900.0, (measured,)),))
        return compute("n", snap, rates).pods[0].containers[0].usage

    at_scan(1000.0, 1000.0, 2.0)
    first = at_scan(1001.0, 1002.0, 3.0)                 # a new scan: 1 s of CPU in 2 s
    again = at_scan(1002.1, 1002.0, 3.0)                 # no new scan since: the same answer
    assert first.usage_nano_cores == again.usage_nano_cores == 500_000_000
    assert again.usage_core_nano_seconds == 3_000_000_000 and again.time == 1002.0
    later = at_scan(1003.2, 1004.0, 3.5)
    assert later.usage_nano_cores == 250_000_000


def test_a_pod_usage_seen_again_keeps_its_stats_and_a_new_scan_gets_new_rates():
    """Issue 16: at 5000 pods every request rebuilt and re-encoded every pod from a background scan
    that changes every few seconds. A PodUsage handed out again (the same scan) keeps its PodStats
    (and its JSON); the next scan's gets its rate against the previous sample."""
    rates, memo = CpuRates(), StatsMemo()
    old = PodUsage("ns", "p", "uid-1", 1_700_000_050.0, (ContainerUsage("c", "r1", 1000.0, 2.0, 10, 10, 10,
                                                                         timestamp=1010.0),))
    first = compute("n", UsageSnapshot(1011.0, NODE, (old,)), rates, memo)
    encode(first)
    again = compute("n", UsageSnapshot(1012.0, NODE, (old,)), rates, memo)
    assert again.pods[0] is first.pods[0] and again.pods[0].parts is not None
    assert encode(again) == json.dumps(to_json(again), separators=(",", ":")).encode()
    new = PodUsage("ns", "p", "uid-1", 1_700_000_050.0, (ContainerUsage("c", "r1", 1000.0, 7.0, 10, 10, 10,
                                                                         timestamp=1020.0),))
    later = compute("n", UsageSnapshot(1021.0, NODE, (new,)), rates, memo)
    assert later.pods[0] is not first.pods[0]
    assert later.pods[0].containers[0].usage.usage_nano_cores == 500_000_000   # 5 s of CPU in 10 s
