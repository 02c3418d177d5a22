"""``/metrics/resource``: the kubelet's resource metrics as Prometheus text (format 0.0.4).

What metrics-server v0.7 reads (``pkg/scraper/client/resource/decode.go``):
``node_cpu_usage_seconds_total`` and ``node_memory_working_set_bytes`` (unlabelled),
``container_cpu_usage_seconds_total``, ``container_memory_working_set_bytes`` and
``container_start_time_seconds`` labelled ``container``, ``pod``, ``namespace``;
timestamps in milliseconds; a zero CPU or memory value makes it drop the node
or the whole pod. The pod series and both scrape-error gauges are emitted as the
kubelet emits them. Pure: :class:`~.summary.Stats` in, text out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from vkcmd.kubeletapi.summary import NANO, PodStats, Stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SCRAPE_ERROR_HELP = "1 if there was an error while getting container metrics, 0 otherwise"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _number(value: float) -> str:
    if type(value) is int:
        return str(value)
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return repr(float(value))


def _ms(unix: float) -> str:
    return str(int(unix * 1000))


def _family(name: str, kind: str, help_text: str) -> Iterator[str]:
    yield f"# HELP {name} {help_text}"
    yield f"# TYPE {name} {kind}"


@functools.lru_cache(maxsize=16384)  # the same containers in every scrape
def _container_labels(container: str, pod: str, namespace: str) -> str:
    return f'{{container="{_escape(container)}",pod="{_escape(pod)}",namespace="{_escape(namespace)}"}}'


@functools.lru_cache(maxsize=8192)
def _pod_labels(pod: str, namespace: str) -> str:
    return f'{{pod="{_escape(pod)}",namespace="{_escape(namespace)}"}}'


def _scrape_errors(value: int) -> Iterator[str]:
    yield from _family("resource_scrape_error", "gauge", f"[STABLE] {_SCRAPE_ERROR_HELP}")
    yield f"resource_scrape_error {value}"
    yield from _family("scrape_error", "gauge", f"[ALPHA] (Deprecated since 1.29.0) {_SCRAPE_ERROR_HELP}")
    yield f"scrape_error {value}"


def _series(name: str, kind: str, help_text: str, samples: list[str]) -> Iterator[str]:
    """A family with its HELP and TYPE lines; nothing at all when it has no samples (as the kubelet)."""
    if samples:
        yield from _family(name, kind, help_text)
        for sample in samples:
            yield f"{name}{sample}"


def _pod_samples(pod: PodStats) -> tuple[list[tuple[str, float | None]], list[tuple[str, float | None]], list[str],
                                         tuple[str, float | None] | None, tuple[str, float | None] | None]:
    """The pod's samples of each family (container CPU, memory, start time; pod CPU, memory), each
    with its time (None: the scan's), made once per ``PodStats`` (one is kept while its figures stay)."""
    if pod.lines is not None:
        return pod.lines
    cpu, memory, start = [], [], []
    for c in pod.containers:
        labels = _container_labels(c.name, pod.name, pod.namespace)
        cpu.append((f"{labels} {_number(c.usage.usage_core_nano_seconds / NANO)}", c.usage.time))
        memory.append((f"{labels} {_number(c.usage.working_set_bytes)}", c.usage.time))
        if c.start_time > 0:
            start.append(f"{labels} {_number(c.start_time)}")
    pod_cpu = pod_memory = None
    if pod.containers:
        labels = _pod_labels(pod.name, pod.namespace)
        pod_cpu = (f"{labels} {_number(pod.usage.usage_core_nano_seconds / NANO)}", pod.usage.time)
        pod_memory = (f"{labels} {_number(pod.usage.working_set_bytes)}", pod.usage.time)
    pod.lines = (cpu, memory, start, pod_cpu, pod_memory)
    return pod.lines


def _pods_text(stats: Stats) -> tuple[str, str]:
    """The lines before the node's (the container families) and after them (the pod families, the
    error gauges), built once per pods and scan."""
    built = stats.cache.get("resource")
    if built is not None:
        return built
    scan = _ms(stats.measured_at)
    samples = [pod.lines or _pod_samples(pod) for pod in stats.pods]

    def stamped(sample: tuple[str, float | None]) -> str:
        return f"{sample[0]} {scan if sample[1] is None else _ms(sample[1])}"

    before = [*_series("container_cpu_usage_seconds_total", "counter",
                       "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
                       [stamped(line) for s in samples for line in s[0]]),
              *_series("container_memory_working_set_bytes", "gauge",
                       "[STABLE] Current working set of the container in bytes",
                       [stamped(line) for s in samples for line in s[1]]),
              *_series("container_start_time_seconds", "gauge",
                       "[STABLE] Start time of the container since unix epoch in seconds",
                       [line for s in samples for line in s[2]])]
    after = [*_series("pod_cpu_usage_seconds_total", "counter",
                      "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
                      [stamped(s[3]) for s in samples if s[3] is not None]),
             *_series("pod_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the pod in bytes",
                      [stamped(s[4]) for s in samples if s[4] is not None]),
             *_scrape_errors(0)]
    built = stats.cache["resource"] = ("\n".join(before), "\n".join(after))
    return built


def render(stats: Stats) -> str:
    """The full exposition for ``stats``: the pods' lines once per scan (``_pods_text``), the node's per call."""
    before, after = _pods_text(stats)
    node = stats.node.usage
    lines = [*_series("node_cpu_usage_seconds_total", "counter",
                      "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
                      [f" {_number(node.usage_core_nano_seconds / NANO)} {_ms(node.time)}"]),
             *_series("node_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the node in bytes",
                      [f" {_number(node.working_set_bytes)} {_ms(node.time)}"])]
    return "\n".join([before, *lines, after] if before else [*lines, after]) + "\n"


def render_error() -> str:
    """What the kubelet serves when it could not measure: only the error gauges, set to 1."""
    return "\n".join(_scrape_errors(1)) + "\n"
