"""``/stats/summary``: node, pod and container CPU and memory, shaped like the kubelet's.

:func:`compute` turns a :class:`~.backend.UsageSnapshot` into :class:`Stats`
(usageNanoCores from the difference with the previous sample of the same
container run, kept by :class:`CpuRates`; a sample carries the time of the scan
that measured it, so a background scan served twice keeps its rate); :func:`to_json` gives the JSON of
``k8s.io/kubelet/pkg/apis/stats/v1alpha1.Summary`` and :func:`encode` the same
document as compact JSON bytes, built as text; ``resource_metrics`` renders
the same :class:`Stats` as Prometheus text. :class:`StatsSource` makes one scan
serve every caller for about a second. With a :class:`StatsMemo`, a pod whose figures did not change
keeps its ``PodStats`` (and its text) from one scan to the next, and the pods' part of each answer is
built once per scan: a request joins it to the node's. No HTTP here.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vkcmd.kubeletapi.backend import ContainerUsage, PodUsage, UsageSnapshot

NANO = 1_000_000_000
MIN_CPU_NS = 1000  # 1 µs: a live run never shows 0 CPU (metrics-server would drop its pod)
NODE_KEY = "\x00node"  # the node's own CPU series in CpuRates (never a run id)


# The values below are made per measurement (thousands at a few hundred pods) and only read after:
# plain slotted dataclasses, several times cheaper to make than frozen ones. Never change one.
@dataclass(slots=True)
class Usage:
    """CPU and memory of one node, pod or container at ``time`` (unix seconds). None: at the scan the
    stats come from (``Stats.measured_at``), or for a pod with no container, when they were taken
    (``Stats.taken_at``): a pod's stats are then kept from one scan to the next while its figures stay."""

    time: float | None
    usage_nano_cores: int
    usage_core_nano_seconds: int
    working_set_bytes: int
    rss_bytes: int
    usage_bytes: int
    available_bytes: int | None = None


@dataclass(slots=True)
class ContainerStats:
    name: str
    start_time: float
    usage: Usage


@dataclass(slots=True)
class PodStats:
    namespace: str
    name: str
    uid: str
    start_time: float
    containers: tuple[ContainerStats, ...]
    usage: Usage
    process_count: int
    parts: list[str] | None = None      # its JSON split where its unset times go, once encoded
    lines: tuple | None = None          # its Prometheus samples without their unset times (resource_metrics)


@dataclass(slots=True)
class NodeStats:
    name: str
    start_time: float
    usage: Usage


@dataclass(slots=True)
class Stats:
    node: NodeStats
    pods: tuple[PodStats, ...]
    taken_at: float
    measured_at: float                  # the scan the pods come from (their unset times)
    cache: dict[str, Any] = field(default_factory=dict)   # the pods' part of each answer, shared by
                                                          # the Stats of the same pods and scan


class StatsMemo:
    """What :func:`compute` keeps from one call to the next: the stats of each ``PodUsage`` (by id,
    with the object itself, so that a reused id is never taken for it, and the scan time they were
    made for), and the last pods, their stats and ``cache``."""

    __slots__ = ("by_usage", "pods", "measured_at", "stats", "cache")

    def __init__(self) -> None:
        self.by_usage: dict[int, tuple[PodUsage, PodStats, float]] = {}
        self.pods: Any = None
        self.measured_at: float | None = None
        self.stats: tuple[PodStats, ...] = ()
        self.cache: dict[str, Any] = {}


class CpuRates:
    """The previous CPU sample of every series (container run or node), to compute rates.

    A cumulative CPU value never goes down within a run (a process of the run
    that exits takes its time with it; the previous value is kept instead) and is
    at least 1 µs, so metrics-server never sees a zero and drops the pod.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._previous: dict[str, tuple[float, int, int]] = {}  # key -> (at, cumulative ns, nano-cores)

    def observe(self, key: str, start_time: float, at: float, cpu_ns: int) -> tuple[int, int]:
        """(cumulative ns, nano-cores) for this sample; remembers it for the next one. The sample
        seen last, seen again (the same scan at the same ``at``), keeps the rate it had."""
        with self._lock:
            return self.observe_held(key, start_time, at, cpu_ns)

    def observe_held(self, key: str, start_time: float, at: float, cpu_ns: int) -> tuple[int, int]:
        """``observe`` with ``lock`` held by the caller (once for thousands of samples)."""
        previous = self._previous.get(key)
        cumulative = max(MIN_CPU_NS, cpu_ns, previous[1] if previous else 0)
        if previous and at == previous[0]:
            self._previous[key] = (at, cumulative, previous[2])
            return cumulative, previous[2]
        if previous and at > previous[0]:
            rate = (cumulative - previous[1]) / (at - previous[0])
        elif at > start_time:
            rate = cumulative / (at - start_time)  # first sample: the average since the run started
        else:
            rate = 0.0
        nano_cores = max(0, int(rate))
        if not previous or at >= previous[0]:
            self._previous[key] = (at, cumulative, nano_cores)
        return cumulative, nano_cores

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def retain(self, keys: Iterable[str]) -> None:
        """Forget every series not in ``keys`` (runs that ended)."""
        keep = set(keys) | {NODE_KEY}
        with self._lock:
            for key in [k for k in self._previous if k not in keep]:
                del self._previous[key]

    def __len__(self) -> int:
        return len(self._previous)


def _container_stats(container: ContainerUsage, measured: float, rates: CpuRates) -> ContainerStats:
    at = measured if container.timestamp is None else container.timestamp
    cumulative, nano_cores = rates.observe_held(container.run_id, container.start_time, at,
                                                int(container.cpu_seconds * NANO))
    working_set = container.memory_working_set_bytes
    available = None
    if container.memory_limit_bytes is not None:
        available = max(0, container.memory_limit_bytes - working_set)
    usage = Usage(container.timestamp, nano_cores, cumulative, working_set, container.memory_rss_bytes,
                  max(container.memory_usage_bytes, working_set), available)
    return ContainerStats(container.name, container.start_time, usage)


def _sum(usages: list[Usage], at: float | None) -> Usage:
    if len(usages) == 1:
        u = usages[0]
        return Usage(at, u.usage_nano_cores, u.usage_core_nano_seconds, u.working_set_bytes, u.rss_bytes,
                     u.usage_bytes)
    return Usage(at, sum(u.usage_nano_cores for u in usages), sum(u.usage_core_nano_seconds for u in usages),
                 sum(u.working_set_bytes for u in usages), sum(u.rss_bytes for u in usages),
                 sum(u.usage_bytes for u in usages))


def _pod_stats(pod: PodUsage, measured: float, rates: CpuRates) -> tuple[PodStats, bool]:
    """(rates' lock held) The pod's stats; True when they hold at a later scan of the same figures (no container carries
    its own time)."""
    containers = tuple(_container_stats(c, measured, rates) for c in pod.containers)
    times = [c.usage.time for c in containers]
    if all(t is None for t in times):
        at, keep = None, True
    else:
        at, keep = max(measured if t is None else t for t in times), all(t is not None for t in times)
    stats = PodStats(pod.namespace, pod.name, pod.uid, pod.start_time, containers,
                     _sum([c.usage for c in containers], at), sum(c.process_count for c in pod.containers))
    return stats, keep


def _same_rates(pod: PodUsage, stats: PodStats, measured: float, rates: CpuRates) -> bool:
    """(rates' lock held) Whether ``stats`` (made at an earlier scan of the same figures) hold at ``measured``: each
    container's rate, observed at this scan, is the one it had."""
    for container, made in zip(pod.containers, stats.containers):
        if container.timestamp is None:
            cumulative, nano_cores = rates.observe_held(container.run_id, container.start_time, measured,
                                                        int(container.cpu_seconds * NANO))
            if cumulative != made.usage.usage_core_nano_seconds or nano_cores != made.usage.usage_nano_cores:
                return False
    return True


def compute(node_name: str, snapshot: UsageSnapshot, rates: CpuRates, memo: StatsMemo | None = None) -> Stats:
    """Stats for one snapshot; updates ``rates`` (and forgets runs no longer present). With ``memo``
    (kept by the caller between calls), a ``PodUsage`` seen before - the same object, which the
    backend hands out again while its figures are the same - keeps the ``PodStats`` it got then as
    long as its rates are the same at this scan; the same ``pods`` at the same scan keep their
    stats and the parts of the answers built of them."""
    at = snapshot.taken_at
    measured = at if snapshot.measured_at is None else snapshot.measured_at
    if memo is not None and memo.pods is snapshot.pods and memo.measured_at == measured:
        pods, cache = memo.stats, memo.cache
    else:
        old = memo.by_usage if memo is not None else {}
        seen: dict[int, tuple[PodUsage, PodStats, float]] = {}
        made: list[PodStats] = []
        runs: list[str] = []
        with rates.lock:
            for pod in snapshot.pods:
                hit = old.get(id(pod))
                if hit is not None and hit[0] is pod and (hit[2] == measured or
                                                          _same_rates(pod, hit[1], measured, rates)):
                    stats, keep = hit[1], True
                else:
                    stats, keep = _pod_stats(pod, measured, rates)
                made.append(stats)
                if keep:
                    seen[id(pod)] = (pod, stats, measured)
                if pod.containers:
                    runs.extend([c.run_id for c in pod.containers])
        pods, cache = tuple(made), {}
        rates.retain(runs)
        if memo is not None:
            memo.by_usage, memo.pods, memo.measured_at, memo.stats, memo.cache = seen, snapshot.pods, measured, pods, cache
    node = snapshot.node
    cumulative, nano_cores = rates.observe(NODE_KEY, node.start_time, at, int(node.cpu_seconds * NANO))
    node_usage = Usage(at, nano_cores, cumulative, node.memory_working_set_bytes, node.memory_rss_bytes,
                       max(node.memory_usage_bytes, node.memory_working_set_bytes), node.memory_available_bytes)
    return Stats(NodeStats(node_name, node.start_time, node_usage), pods, at, measured, cache)


def unset_time(stats: Stats, pod: PodStats) -> float:
    """What an unset time of ``pod`` stands for: the scan's, or the request's for a pod with no container."""
    return stats.measured_at if pod.containers else stats.taken_at


# --- JSON ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8192)  # the same few instants recur in every summary
def rfc3339(unix: float) -> str:
    """metav1.Time on the wire: seconds precision, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def _cpu(usage: Usage, unset: float) -> dict[str, Any]:
    return {"time": rfc3339(unset if usage.time is None else usage.time), "usageNanoCores": usage.usage_nano_cores,
            "usageCoreNanoSeconds": usage.usage_core_nano_seconds}


def _memory(usage: Usage, unset: float) -> dict[str, Any]:
    memory: dict[str, Any] = {"time": rfc3339(unset if usage.time is None else usage.time)}
    if usage.available_bytes is not None:
        memory["availableBytes"] = usage.available_bytes
    memory.update(usageBytes=usage.usage_bytes, workingSetBytes=usage.working_set_bytes, rssBytes=usage.rss_bytes)
    return memory


def _pod_json(stats: Stats, pod: PodStats) -> dict[str, Any]:
    unset = unset_time(stats, pod)
    return {"podRef": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "startTime": rfc3339(pod.start_time),
            "containers": [{"name": c.name, "startTime": rfc3339(c.start_time),
                            "cpu": _cpu(c.usage, unset), "memory": _memory(c.usage, unset)} for c in pod.containers],
            "cpu": _cpu(pod.usage, unset), "memory": _memory(pod.usage, unset),
            "process_stats": {"process_count": pod.process_count}}


def to_json(stats: Stats) -> dict[str, Any]:
    """The ``Summary`` object of the kubelet's stats API (fields vkcmd can measure; the rest omitted)."""
    node = stats.node
    return {
        "node": {"nodeName": node.name, "startTime": rfc3339(node.start_time),
                 "cpu": _cpu(node.usage, stats.taken_at), "memory": _memory(node.usage, stats.taken_at)},
        "pods": [_pod_json(stats, pod) for pod in stats.pods],
    }


# --- JSON bytes: the document of to_json, encoded without building it --------------------------

@functools.lru_cache(maxsize=16384)  # names, namespaces and uids recur in every summary
def _string(value: str) -> str:
    return json.dumps(value)


#: Where an unset time goes in a pod's text: never in JSON text (json.dumps escapes control characters).
_HOLE = "\x00"


def _time_text(usage: Usage) -> str:
    return _HOLE if usage.time is None else rfc3339(usage.time)


def _cpu_text(usage: Usage) -> str:
    return (f'{{"time":"{_time_text(usage)}","usageNanoCores":{usage.usage_nano_cores},'
            f'"usageCoreNanoSeconds":{usage.usage_core_nano_seconds}}}')


def _memory_text(usage: Usage) -> str:
    available = "" if usage.available_bytes is None else f'"availableBytes":{usage.available_bytes},'
    return (f'{{"time":"{_time_text(usage)}",{available}"usageBytes":{usage.usage_bytes},'
            f'"workingSetBytes":{usage.working_set_bytes},"rssBytes":{usage.rss_bytes}}}')


def _pod_parts(pod: PodStats) -> list[str]:
    """The pod's JSON text split where its unset times go (made once per ``PodStats``)."""
    if pod.parts is not None:
        return pod.parts
    containers = ",".join(f'{{"name":{_string(c.name)},"startTime":"{rfc3339(c.start_time)}",'
                          f'"cpu":{_cpu_text(c.usage)},"memory":{_memory_text(c.usage)}}}' for c in pod.containers)
    pod.parts = (f'{{"podRef":{{"name":{_string(pod.name)},"namespace":{_string(pod.namespace)},'
                 f'"uid":{_string(pod.uid)}}},"startTime":"{rfc3339(pod.start_time)}","containers":[{containers}],'
                 f'"cpu":{_cpu_text(pod.usage)},"memory":{_memory_text(pod.usage)},'
                 f'"process_stats":{{"process_count":{pod.process_count}}}}}').split(_HOLE)
    return pod.parts


def _pods_text(stats: Stats) -> bytes:
    """The pods' JSON array items, built once per pods and scan (and per second of ``taken_at`` when a
    pod without containers is stamped with it)."""
    taken = rfc3339(stats.taken_at)
    built = stats.cache.get("summary")
    if built is None or (built[0] and built[1] != taken):
        measured, stamped_taken, texts = rfc3339(stats.measured_at), False, []
        for pod in stats.pods:
            parts = pod.parts or _pod_parts(pod)
            if pod.containers:
                texts.append(measured.join(parts))
            else:
                stamped_taken = True
                texts.append(taken.join(parts))
        built = stats.cache["summary"] = (stamped_taken, taken, ",".join(texts).encode())
    return built[2]


def encode(stats: Stats) -> bytes:
    """``json.dumps(to_json(stats), separators=(",", ":"))`` as UTF-8 bytes, the same bytes, built as
    text directly: the pods' part once per scan (see ``_pods_text``), the node's per call."""
    node = stats.node
    head = (f'{{"node":{{"nodeName":{_string(node.name)},"startTime":"{rfc3339(node.start_time)}",'
            f'"cpu":{_cpu_text(node.usage)},"memory":{_memory_text(node.usage)}}},"pods":[')
    return b"".join((head.encode(), _pods_text(stats), b"]}"))


class StatsSource:
    """Stats measured at most once per ``ttl`` seconds, however many scrapers ask.

    Concurrent callers of an expired entry wait for the one scan in progress
    instead of starting their own. ``render`` memoises a serialisation of the
    current stats (the JSON body, the Prometheus text) so it is built once too.
    """

    def __init__(self, node_name: str, usage: Callable[[], UsageSnapshot], *, ttl: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._node_name = node_name
        self._usage = usage
        self._ttl = ttl
        self._clock = clock
        self._rates = CpuRates()
        self._memo = StatsMemo()
        self._lock = threading.Lock()
        self._stats: Stats | None = None
        self._measured_at = 0.0
        self._rendered: dict[str, Any] = {}

    def get(self) -> Stats:
        """Current stats; raises what the backend's ``usage()`` raises."""
        with self._lock:
            now = self._clock()
            if self._stats is None or now - self._measured_at >= self._ttl:
                self._stats = compute(self._node_name, self._usage(), self._rates, self._memo)
                self._measured_at = self._clock()
                self._rendered = {}
            return self._stats

    def render(self, kind: str, renderer: Callable[[Stats], Any]) -> Any:
        """``renderer(stats)`` for the current stats, computed once per measurement and ``kind``."""
        stats = self.get()
        with self._lock:
            cached = self._rendered.get(kind)
            if cached is not None and cached[0] is stats:
                return cached[1]
        value = renderer(stats)
        with self._lock:
            if self._stats is stats:
                self._rendered[kind] = (stats, value)
        return value
