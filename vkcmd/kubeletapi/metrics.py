"""vkcmd's own Prometheus metrics (``/metrics``) and the optional plain-HTTP exporter.

Every metric lives in the registry passed in, so each test and each app has
its own. Pods by phase are read at scrape time from a source the app sets;
the rest are counters and histograms the other layers feed through the
helpers here (:meth:`Metrics.fsm_observer`, :meth:`Metrics.api_call`, ...).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from fsm.machine import Move, state_label

log = logging.getLogger("vkcmd.kubeletapi.metrics")

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
_API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_START_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _PodPhases:
    """Collector: ``vkcmd_pods{phase}`` from the app's source, read at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, int]] | None = None

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily("vkcmd_pods", "Pods this node runs, by phase", labels=["phase"])]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("vkcmd_pods", "Pods this node runs, by phase", labels=["phase"])
        counts: dict[str, int] = dict.fromkeys(PHASES, 0)
        if self.source is not None:
            try:
                counts.update(self.source())
            except Exception:  # a scrape must not fail because of one source
                log.exception("pod phase source failed")
        for phase, count in sorted(counts.items()):
            family.add_metric([phase], count)
        yield family


class ApiCall:
    """What :meth:`Metrics.api_call` yields: set ``code`` if the call ends without an exception."""

    def __init__(self) -> None:
        self.code: str = "200"


class Metrics:
    """vkcmd's metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._phases = _PodPhases()
        registry.register(self._phases)
        self.container_starts = Counter("vkcmd_container_starts", "Container runs started, by reason",
                                        ["reason"], registry=registry)
        self.container_exits = Counter("vkcmd_container_exits", "Container runs ended, by reason",
                                       ["reason"], registry=registry)
        self.transitions = Counter("vkcmd_state_transitions", "State-machine transitions",
                                   ["machine", "from", "to"], registry=registry)
        self.api_requests = Counter("vkcmd_api_requests", "Kubernetes API requests made, by verb and status code",
                                    ["verb", "code"], registry=registry)
        self.api_latency = Histogram("vkcmd_api_request_duration_seconds", "Kubernetes API request latency",
                                     ["verb"], buckets=_API_BUCKETS, registry=registry)
        self.pod_start_latency = Histogram("vkcmd_pod_start_latency_seconds",
                                           "Seconds from pod creation to all its containers running",
                                           buckets=_START_BUCKETS, registry=registry)
        self.kubelet_requests = Counter("vkcmd_kubelet_api_requests",
                                        "Requests served by the kubelet API, by endpoint and status code",
                                        ["endpoint", "code"], registry=registry)

    def set_pod_phase_source(self, source: Callable[[], Mapping[str, int]]) -> None:
        """``source()`` -> {phase: count}; called at every scrape (keep it cheap)."""
        self._phases.source = source

    def fsm_observer(self) -> Callable[[Move], None]:
        """An ``fsm`` observer counting every move of every machine it is attached to."""
        def observe(move: Move) -> None:
            self.transitions.labels(move.kind, state_label(move.source), state_label(move.target)).inc()
        return observe

    def observe_api_request(self, verb: str, code: int | str, seconds: float) -> None:
        self.api_requests.labels(verb, str(code)).inc()
        self.api_latency.labels(verb).observe(seconds)

    @contextmanager
    def api_call(self, verb: str) -> Iterator[ApiCall]:
        """Time one API call; an exception with a ``status`` attribute is counted with that code, else "error"."""
        call = ApiCall()
        started = time.monotonic()
        try:
            yield call
        except Exception as error:
            call.code = str(getattr(error, "status", None) or "error")
            raise
        finally:
            self.observe_api_request(verb, call.code, time.monotonic() - started)

    def observe_pod_start(self, seconds: float) -> None:
        self.pod_start_latency.observe(seconds)

    def container_started(self, reason: str = "Started") -> None:
        self.container_starts.labels(reason).inc()

    def container_exited(self, reason: str) -> None:
        self.container_exits.labels(reason).inc()

    def kubelet_request(self, endpoint: str, code: int) -> None:
        self.kubelet_requests.labels(endpoint, str(code)).inc()


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """(body, content type) of ``registry`` in the Prometheus text format."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


class MetricsExporter:
    """Plain-HTTP ``/metrics`` for Prometheus on ``VK_METRICS_PORT`` (port 0 picks one: see ``.port``).

    prometheus_client's own threaded server (``start_http_server``) over the registry passed in.
    """

    def __init__(self, registry: CollectorRegistry, port: int, address: str = "0.0.0.0") -> None:
        self._registry = registry
        self._address = (address, port)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the metrics exporter is not started")
        return self._server.server_address[1]

    def start(self) -> None:
        self._server, self._thread = start_http_server(self._address[1], self._address[0], registry=self._registry)
        self._thread.name = "metrics-exporter"
        log.info("metrics exporter listening", extra={"fields": {"port": self.port}})

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
