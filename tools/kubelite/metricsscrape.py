"""Scraping a kubelet's ``/metrics/resource`` and turning two scrapes into usage, as metrics-server 0.7 does.

Owns the parse (prometheus_client's text parser), metrics-server's validity rules
(a zero CPU or memory drops the node or the whole pod) and the rate rule (CPU =
delta of the cumulative counter over the time between the two samples). Knows
nothing of HTTP routing or the API objects served from the result.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from . import logproxy


@dataclass(frozen=True)
class Point:
    """One cumulative CPU reading (core-seconds), the working set (bytes) and when it was taken (unix s)."""

    cpu: float
    memory: float
    time: float


@dataclass
class Scrape:
    """A node's ``/metrics/resource`` at one moment: the node point and one per (namespace, pod, container)."""

    node: Point | None = None
    containers: dict[tuple[str, str, str], Point] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    """A rate between two points: nanocores, working-set bytes, the newer timestamp and the window (s)."""

    nanocores: int
    memory: int
    time: float
    window: float


def parse(text: str) -> Scrape:
    """The samples metrics-server reads; points with a zero value are dropped (the pod with them)."""
    cpu: dict = {}
    mem: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("node_cpu_usage_seconds_total", "container_cpu_usage_seconds_total"):
                cpu[_key(s.labels)] = (s.value, s.timestamp)
            elif s.name in ("node_memory_working_set_bytes", "container_memory_working_set_bytes"):
                mem[_key(s.labels)] = (s.value, s.timestamp)
    out = Scrape()
    bad_pods = set()
    for key, (c, ts) in cpu.items():
        m = (mem.get(key) or (0, None))[0]
        if c == 0 or m == 0 or ts is None:
            if key:
                bad_pods.add(key[:2])
            continue
        if key:
            out.containers[key] = Point(c, m, ts)
        else:
            out.node = Point(c, m, ts)
    for key in [k for k in out.containers if k[:2] in bad_pods]:
        del out.containers[key]
    return out


def _key(labels: dict) -> tuple:
    if not labels:
        return ()
    return labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", "")


def rate(prev: Point | None, last: Point | None) -> Usage | None:
    """CPU rate between two samples; None when there is no pair or the counter went back (a restart)."""
    if prev is None or last is None or last.time <= prev.time or last.cpu < prev.cpu:
        return None
    window = last.time - prev.time
    return Usage(int((last.cpu - prev.cpu) / window * 1e9), int(last.memory), last.time, window)


def fetch(node: dict, ctx: ssl.SSLContext, timeout: float = 5.0) -> Scrape:
    """GET ``/metrics/resource`` from the node's kubelet (InternalIP, daemon endpoint port)."""
    host, port = logproxy.kubelet_address(node)
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", "/metrics/resource")
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
    finally:
        conn.close()
    if resp.status != 200:
        raise OSError(f"kubelet {host}:{port} answered {resp.status}")
    return parse(body)
