"""Wires the node's pieces together and runs them (the only module that knows all layers).

:meth:`App.build` constructs everything without starting anything (a bad
certificate stops start-up there); :meth:`App.run` starts the pieces, waits for
a reason to stop — a signal, the walltime margin, an operator request — then
drains and exits. Signal handlers only enqueue; the main thread acts.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from fsm import LogObserver
from vkcmd.config import ConfigError, Settings
from vkcmd.kube.client import KubeClient
from vkcmd.kube.events import EventRecorder
from vkcmd.kube.node import NodeConfig, NodeController
from vkcmd.kube.objects import ClusterObjects
from vkcmd.kube.pods import PodController
from vkcmd.kube.reviews import AccessReviewer, TokenReviewer
from vkcmd.kubeletapi.auth import Authenticator, Authorizer
from vkcmd.kubeletapi.metrics import Metrics, MetricsExporter
from vkcmd.kubeletapi.server import KubeletServer
from vkcmd.pods import Workspace
from vkcmd.provider import PodManager
from vkcmd.runtime import ExitReport, Runtime
from vkcmd.runtime.host import HostFacts, host_facts
from vkcmd.runtime.logindex import LogIndexer
from vkcmd.runtime.probes import ProbeRunner
from vkcmd.serving import NodeBackend, tls_context

log = logging.getLogger("vkcmd.app")


@dataclass(frozen=True)
class StopRequest:
    reason: str  # e.g. Shutdown, WalltimeExpired, OperatorRequest
    message: str


def node_config(settings: Settings) -> NodeConfig:
    return NodeConfig(
        name=settings.node_name, pod_ip=settings.pod_ip, kubelet_port=settings.kubelet_port,
        provider=settings.provider, node_type=settings.node_type, site=settings.site,
        walltime=settings.walltime, max_pods=settings.max_pods, cpu=settings.cpu, memory=settings.memory,
        lease_duration=settings.lease_duration, lease_renew_interval=settings.lease_renew_interval,
        status_interval=settings.node_status_interval, alivetime_interval=settings.alivetime_interval,
        drain_margin=settings.drain_margin, delete_on_exit=settings.delete_node_on_exit,
    )


class _ExitRelay:
    """The runtime reports exits before the provider exists; this forwards them once it does."""

    def __init__(self) -> None:
        self.target = None

    def __call__(self, report: ExitReport) -> None:
        if self.target is not None:
            self.target(report)


class App:
    """The running node: :meth:`build`, then :meth:`run`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.requests: queue.Queue[StopRequest] = queue.Queue()
        self._signals = 0

    # --- construction ------------------------------------------------------------------------

    def build(self) -> None:
        s = self.settings
        self.facts: HostFacts = host_facts()
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.client = KubeClient.from_kubeconfig(s.kubeconfig, observer=self.metrics.observe_api_request)
        trace = [LogObserver(), self.metrics.fsm_observer()]
        context = tls_context(s, self.client.configuration.ssl_ca_cert)

        self.events = EventRecorder(self.client, s.node_name)
        self.pods = PodController(self.client, s.node_name, self.events)
        relay = _ExitRelay()
        self.runtime = Runtime(Path(s.state_dir) / "runs", on_exit=relay)
        self.indexer = LogIndexer()
        self.probes = ProbeRunner()
        self.objects = ClusterObjects(self.client, on_change=lambda kind, ns, name: self.provider.object_changed(
            kind, ns, name), node_facts=self._node_facts)
        self.provider = PodManager(
            self.runtime, Workspace(s.workspace_root), self.objects, self.pods, pod_ip=s.pod_ip,
            home=str(Path.home()), base_env=dict(os.environ), backoff_initial=s.backoff_initial,
            backoff_max=s.backoff_max, logs=self.indexer, observers=trace, probes=self.probes,
            metrics=self.metrics)
        relay.target = self.provider.on_exit
        self.pods.attach(self.provider)
        self.metrics.set_pod_phase_source(self._phases)
        self.node = NodeController(self.client, node_config(s), self.facts, self.pods, observers=trace,
                                   on_drain_request=self.request_stop)
        authorizer = Authorizer(s.node_name, None if s.authorization_mode == "AlwaysAllow"
                                else AccessReviewer(self.client))
        self.server = KubeletServer(node_name=s.node_name, backend=NodeBackend(self.provider, self.runtime,
                                                                              self.indexer),
                                    ssl_context=context, authenticator=Authenticator(TokenReviewer(self.client)),
                                    authorizer=authorizer, registry=self.registry, metrics=self.metrics,
                                    port=s.kubelet_port)
        self.exporter = MetricsExporter(self.registry, s.metrics_port) if s.metrics_port else None

    def _node_facts(self) -> dict[str, Any]:
        s = self.settings
        return {"nodeName": s.node_name, "hostIP": s.pod_ip, "podIP": s.pod_ip, "podIPs": [s.pod_ip],
                "allocatable": {"cpu": s.cpu or str(self.facts.cpus),
                                "memory": s.memory or str(self.facts.memory_bytes),
                                "ephemeral-storage": "0"}}

    def _phases(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for pod in self.provider.pods():
            phase = (pod.get("status") or {}).get("phase", "Pending")
            counts[phase] = counts.get(phase, 0) + 1
        return counts

    # --- running -------------------------------------------------------------------------------

    def request_stop(self, reason: str, message: str) -> None:
        """Thread-safe (and signal-safe): ask the main loop to drain."""
        self.requests.put(StopRequest(reason, message))

    def _on_signal(self, signum: int, _frame) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        self.requests.put(StopRequest("Shutdown", f"received {name}" + (" again" if self._signals > 1 else "")))

    def run(self) -> int:
        s = self.settings
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.runtime.start()
        self.indexer.start()
        self.events.start()
        self.objects.start()
        self.provider.start()
        self.server.start()
        if self.exporter is not None:
            self.exporter.start()
        log.info("kubelet API listening on port %d", self.server.port)
        registrar = threading.Thread(target=self.node.start, name="node-register", daemon=True)
        registrar.start()
        self.pods.start()
        # What start-up made (modules, classes, the client's tables) lives as long as vkcmd: out of
        # the collector's sight, a full collection walks only what came after (at 500 pods it took
        # tens of milliseconds on every thread, a stall that showed in the request tails).
        gc.collect()
        gc.freeze()
        first = self.requests.get()
        if registrar.is_alive():
            registrar.join(1.0)
            if registrar.is_alive():  # still retrying against an API that does not answer
                self.node.stop()
        log.info("draining node %s: %s (%s)", s.node_name, first.reason, first.message)
        drainer = threading.Thread(target=self.node.drain, args=(first.reason, first.message), name="node-drain",
                                   daemon=True)
        drainer.start()
        while drainer.is_alive():
            try:
                again = self.requests.get(timeout=0.5)
            except queue.Empty:
                continue
            if again.reason == "Shutdown":
                log.warning("%s while draining: skipping grace periods", again.message)
                self.node.hurry()
        self._shutdown()
        log.info("node %s expired; exiting", s.node_name)
        return 0

    def _shutdown(self) -> None:
        self.pods.stop()
        self.provider.stop()
        self.probes.stop()
        self.server.stop()
        if self.exporter is not None:
            self.exporter.stop()
        self.objects.stop()
        self.events.stop()
        self.node.stop()
        self.indexer.stop()
        self.runtime.stop()
        self.client.close()


def run(settings: Settings) -> int:
    """Run the node until it expires; return the process exit code."""
    app = App(settings)
    try:
        app.build()
    except ConfigError as error:
        print(f"vkcmd: {error}", flush=True, file=sys.stderr)
        return 2
    return app.run()
