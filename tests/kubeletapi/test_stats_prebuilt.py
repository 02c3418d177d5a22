"""Issue 16: the stats answers are joined from parts kept from one scan to the next (a pod's stats and
text while its figures stay, the pods' part of each answer per scan); they must be, byte for byte,
what a fresh computation gives: from every pod's full object and the runtime's usage, with explicit
per-container times, no memo, its own CPU rates - as pods start, change usage, end and go.
Real processes on the shipped backend (``serving.NodeBackend`` over a started runtime and provider).
"""

from __future__ import annotations

import json
import sys
import time

from tools.procs import wait_until
from vkcmd.kubeletapi import resource_metrics
from vkcmd.kubeletapi.backend import ContainerUsage, PodUsage, UsageSnapshot
from vkcmd.kubeletapi.summary import CpuRates, StatsSource, compute, encode, to_json
from vkcmd.timefmt import parse_time

from .conftest import BUSY, SLEEP

GROW = [sys.executable, "-c", "import time\nkept = []\nfor _ in range(400):\n"
        "    kept.append(bytearray(256 * 1024))\n    time.sleep(0.05)\ntime.sleep(60)"]


def fresh_snapshot(node, shipped: UsageSnapshot, runs) -> UsageSnapshot:
    """The snapshot as made before the parts were kept: every pod object copied, every container
    with the time of its scan; the node's figures and time those of ``shipped``."""
    pods = []
    for pod in node.manager.pods():
        meta, status = pod["metadata"], pod.get("status") or {}
        containers = []
        for spec in pod["spec"]["containers"]:
            run = runs.get(f"{meta['uid']}/{spec['name']}")
            if run is not None:
                containers.append(ContainerUsage(spec["name"], f"{meta['uid']}/{spec['name']}@{run.started_at}",
                                                 run.started_at, run.cpu_seconds, run.memory_working_set_bytes,
                                                 run.memory_rss_bytes, run.memory_rss_bytes, run.processes,
                                                 timestamp=run.timestamp))
        start = parse_time(status["startTime"]) if status.get("startTime") else shipped.taken_at
        pods.append(PodUsage(meta["namespace"], meta["name"], meta["uid"], start, tuple(containers)))
    return UsageSnapshot(shipped.taken_at, shipped.node, tuple(pods))


class Pair:
    """The shipped answers (a ``StatsSource`` over the backend, as the server has) beside fresh ones."""

    def __init__(self, node) -> None:
        self.node = node
        self.snapshots: list[UsageSnapshot] = []
        self.source = StatsSource("vk-test", self._usage, ttl=0.0)
        self.rates = CpuRates()

    def _usage(self) -> UsageSnapshot:
        snapshot = self.node.usage()
        self.snapshots.append(snapshot)
        return snapshot

    def _checked(self, kind: str, render, fresh_render) -> bytes | None:
        """One shipped answer and the fresh one of the same snapshot (every shipped computation is
        mirrored, so that both sides' CPU rates see the same samples); None when a scan or a pod
        change came in between (the fresh side could not know what the shipped side saw)."""
        runs, pods = self.node.runtime.usage(), self.node.manager.stats_pods()
        shipped = self.source.render(kind, render)
        fresh = compute("vk-test", fresh_snapshot(self.node, self.snapshots[-1], runs), self.rates)
        if self.node.runtime.usage() is not runs or self.node.manager.stats_pods() is not pods:
            return None
        assert shipped == fresh_render(fresh), kind
        return shipped

    def answers(self) -> tuple[dict, str]:
        """Both answers, each checked against a fresh computation of the same runs, pods and node figures."""
        for _ in range(20):
            summary = self._checked("summary", encode,
                                    lambda fresh: json.dumps(to_json(fresh), separators=(",", ":")).encode())
            metrics = self._checked("resource", lambda s: resource_metrics.render(s).encode(),
                                    lambda fresh: resource_metrics.render(fresh).encode())
            if summary is not None and metrics is not None:
                return json.loads(summary), metrics.decode()
        raise AssertionError("the runtime's usage kept changing")

    def step(self, scan: bool = True) -> dict:
        """A new full scan (unless ``scan`` is False), then the answers twice (the second from the parts)."""
        if scan:
            time.sleep(1.05)           # a new second: the scan's time shows in the text
            self.node.runtime.refresh()
        document, _ = self.answers()
        again, _ = self.answers()
        assert [p["podRef"] for p in again["pods"]] == [p["podRef"] for p in document["pods"]]
        return again


def containers_of(document: dict) -> dict[tuple[str, str], dict]:
    return {(p["podRef"]["name"], c["name"]): c for p in document["pods"] for c in p["containers"]}


def test_answers_joined_from_kept_parts_are_those_computed_afresh(backend):
    backend.add_pod("pre", "idle", {"a": SLEEP, "b": SLEEP})
    backend.add_pod("pre", "busy", {"spin": BUSY})
    pair = Pair(backend)
    first = pair.step()
    pair.step(scan=False)                                  # the same scan: everything from the parts
    later = pair.step()                                    # the same figures for the idle pod, at a new time
    assert containers_of(later)["idle", "a"]["cpu"]["time"] != containers_of(first)["idle", "a"]["cpu"]["time"]
    assert (containers_of(later)["busy", "spin"]["cpu"]["usageCoreNanoSeconds"]
            > containers_of(first)["busy", "spin"]["cpu"]["usageCoreNanoSeconds"])

    backend.add_pod("pre", "grow", {"heap": GROW})         # a pod starts; its memory grows scan by scan
    grown = [containers_of(pair.step())["grow", "heap"]["memory"]["workingSetBytes"] for _ in range(3)]
    assert grown[-1] > grown[0]

    short = backend.add_pod("pre", "short", {"once": ["sleep", "1"]})   # a pod ends: no container left
    wait_until(lambda: (backend.manager.status(short["metadata"]["uid"]) or ({}, {}))[1].get("phase")
               == "Succeeded", 15, "the short pod succeeded")
    ended = pair.step()
    [short_pod] = [p for p in ended["pods"] if p["podRef"]["name"] == "short"]
    assert short_pod["containers"] == []
    pair.step(scan=False)

    backend.manager.remove(short)                          # pods go
    backend.manager.remove({"metadata": {"uid": next(p["podRef"]["uid"] for p in ended["pods"]
                                                     if p["podRef"]["name"] == "busy")}})
    wait_until(lambda: {p.name for p in backend.manager.stats_pods()} == {"idle", "grow"}, 15,
               "the removed pods are cleaned up")
    gone = pair.step()
    assert sorted(p["podRef"]["name"] for p in gone["pods"]) == ["grow", "idle"]
    pair.step()
