"""Wires the node's pieces together and runs them (the only module that knows all layers).

:meth:`App.build` constructs everything without starting anything (a bad
certificate stops start-up there); :meth:`App.run` starts the pieces, waits for
a reason to stop — a signal, the walltime margin, an operator request — then
drains and exits. Signals reach the main loop through ``signal.set_wakeup_fd``
(the C handler writes a byte; the Python handler does nothing): no lock is taken
in a handler, so a signal can never deadlock the thread it interrupts.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import select
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from fsm import LogObserver
from vkcmd.config import ConfigError, Settings
from vkcmd.kube import bootstrap
from vkcmd.kube.client import ApiError, KubeClient, KubeconfigError
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
from vkcmd.containerlogs import LogIndexer
from vkcmd.runtime.probes import ProbeRunner
from vkcmd.kubeletapi.tls import TLSFileError
from vkcmd.serving import NodeBackend, tls_context

log = logging.getLogger("vkcmd.app")


@dataclass(frozen=True)
class StopRequest:
    reason: str  # e.g. Shutdown, WalltimeExpired, OperatorRequest
    message: str


def node_config(settings: Settings, node_identity: bool = False) -> NodeConfig:
    return NodeConfig(
        name=settings.node_name, pod_ip=settings.pod_ip, kubelet_port=settings.kubelet_port,
        provider=settings.provider, node_type=settings.node_type, site=settings.site,
        walltime=settings.walltime, max_pods=settings.max_pods, cpu=settings.cpu, memory=settings.memory,
        ephemeral_storage=settings.ephemeral_storage,
        lease_duration=settings.lease_duration, lease_renew_interval=settings.lease_renew_interval,
        status_interval=settings.node_status_interval, alivetime_interval=settings.alivetime_interval,
        drain_margin=settings.drain_margin, delete_on_exit=settings.delete_node_on_exit, node_identity=node_identity,
    )


def is_node_identity(client: KubeClient, node_name: str) -> bool:
    """The client is this node's kubelet identity (``system:node:<name>`` in ``system:nodes``)."""
    identity = client.certificate_identity()
    return identity is not None and identity[0] == f"system:node:{node_name}" and "system:nodes" in identity[1]


class StopRequests:
    """Reasons to stop, from any thread (:meth:`put`) or a signal; read by the main thread (:meth:`get`).

    Threads append to a ``SimpleQueue`` and write a zero byte to a pipe; signals
    are written to the same pipe by CPython's C-level handler (their number as
    the byte). The main thread waits on the pipe only, so nothing it holds can
    be wanted by a handler.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._queue: queue.SimpleQueue[StopRequest] = queue.SimpleQueue()
        self._signals = 0
        self._previous_fd: int | None = None

    def install(self) -> None:
        """Route SIGTERM/SIGINT here (main thread only)."""
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in self.SIGNALS:
            signal.signal(signum, _ignore_in_python)

    def uninstall(self) -> None:
        """After the drain: further SIGTERM/SIGINT are ignored (left to Python's default, one landing
        while the interpreter shuts down would kill the process and turn exit 0 into -15)."""
        for signum in self.SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)
            self._previous_fd = None

    def put(self, request: StopRequest) -> None:
        """Thread-safe: ask the main loop to act (never from a signal handler: those use the pipe)."""
        self._queue.put(request)
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:  # the pipe is full: the main loop is awake and reading anyway
            pass

    def get(self, timeout: float | None = None) -> StopRequest | None:
        """The next request, or None after ``timeout`` seconds; a burst of signals counts once."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            pass
        ready, _, _ = select.select([self._read], [], [], timeout)
        if not ready:
            return None
        try:
            data = os.read(self._read, 4096)
        except BlockingIOError:
            data = b""
        signals = [b for b in data if b]
        if signals:
            self._signals += 1
            name = signal.Signals(signals[-1]).name
            again = " again" if self._signals > 1 else ""
            burst = f" ({len(signals)} signals)" if len(signals) > 1 else ""
            return StopRequest("Shutdown", f"received {name}{again}{burst}")
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None


def _ignore_in_python(_signum: int, _frame) -> None:
    """The wakeup fd carries the signal; there is nothing to do in Python (and nothing safe to do)."""


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
        self.requests = StopRequests()

    # --- construction ------------------------------------------------------------------------

    def build(self) -> None:
        s = self.settings
        self.facts: HostFacts = host_facts(self.settings.workspace_root)
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        if s.bootstrap_kubeconfig:
            bootstrap.bootstrap(s.kubeconfig, s.bootstrap_kubeconfig, s.node_name)
        self.client = KubeClient.from_kubeconfig(s.kubeconfig, observer=self.metrics.observe_api_request)
        self.rotation = bootstrap.CertificateRotation(self.client, s.kubeconfig, s.node_name,
                                                      on_renewed=lambda: self.client.reload(s.kubeconfig)) \
            if s.bootstrap_kubeconfig else None
        trace = [LogObserver(), self.metrics.fsm_observer()]
        cert_file, key_file = s.tls_cert_file, s.tls_key_file
        if s.serving_cert_bootstrap and not cert_file:
            cert_file, key_file = self._cluster_serving_pair()
        context = tls_context(cert_file, key_file, state_dir=s.state_dir, node_name=s.node_name,
                              addresses=[s.pod_ip], client_ca=s.client_ca_file or self.client.ca_file)
        self.serving_rotation = None
        if s.serving_cert_bootstrap and cert_file and cert_file != s.tls_cert_file:  # the cluster's pair
            # the reload hook: new handshakes use the renewed pair (an SSLContext takes a new chain in place)
            self.serving_rotation = bootstrap.serving_rotation(
                self.client, s.node_name, [s.pod_ip], [self.facts.hostname], s.state_dir,
                on_renewed=lambda c, k: context.load_cert_chain(c, k))

        self.events = EventRecorder(self.client, s.node_name)
        self.objects = ClusterObjects(self.client, on_change=lambda kind, ns, name: self.provider.object_changed(
            kind, ns, name), node_facts=self._node_facts)
        self.pods = PodController(self.client, s.node_name, self.events, references=self.objects)
        relay = _ExitRelay()
        self.runtime = Runtime(Path(s.state_dir) / "runs", on_exit=relay)
        self.indexer = LogIndexer()
        self.probes = ProbeRunner()
        self.provider = PodManager(
            self.runtime, Workspace(s.workspace_root), self.objects, self.pods, pod_ip=s.pod_ip,
            home=str(Path.home()), base_env=dict(os.environ), backoff_initial=s.backoff_initial,
            backoff_max=s.backoff_max, logs=self.indexer, observers=trace, probes=self.probes,
            metrics=self.metrics)
        relay.target = self.provider.on_exit
        self.pods.attach(self.provider)
        self.metrics.set_pod_phase_source(self._phases)
        self.node = NodeController(self.client, node_config(s, is_node_identity(self.client, s.node_name)), self.facts,
                                   self.pods, observers=trace, on_drain_request=self.request_stop, events=self.events)
        authorizer = Authorizer(s.node_name, None if s.authorization_mode == "AlwaysAllow"
                                else AccessReviewer(self.client))
        self.server = KubeletServer(node_name=s.node_name, backend=NodeBackend(self.provider, self.runtime,
                                                                              self.indexer),
                                    ssl_context=context, authenticator=Authenticator(TokenReviewer(self.client)),
                                    authorizer=authorizer, registry=self.registry, metrics=self.metrics,
                                    port=s.kubelet_port, anonymous_metrics=s.anonymous_metrics)
        self.exporter = MetricsExporter(self.registry, s.metrics_port) if s.metrics_port else None

    def _cluster_serving_pair(self) -> tuple[str | None, str | None]:
        """A kubelet-serving certificate from the cluster, or (None, None): the self-signed pair then."""
        s = self.settings
        try:
            return bootstrap.serving_certificate(self.client, s.node_name, [s.pod_ip], [self.facts.hostname],
                                                 s.state_dir)
        except (bootstrap.BootstrapError, ApiError) as error:
            log.warning("no serving certificate from the cluster (%s); serving a self-signed one", error)
            return None, None

    def _node_facts(self) -> dict[str, Any]:
        s = self.settings
        return {"nodeName": s.node_name, "hostIP": s.pod_ip, "podIP": s.pod_ip, "podIPs": [s.pod_ip],
                "allocatable": {"cpu": s.cpu or str(self.facts.cpus),
                                "memory": s.memory or str(self.facts.memory_bytes),
                                "ephemeral-storage": s.ephemeral_storage or str(self.facts.storage_bytes * 9 // 10)}}

    def _phases(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for pod in self.provider.pods():
            phase = (pod.get("status") or {}).get("phase", "Pending")
            counts[phase] = counts.get(phase, 0) + 1
        return counts

    # --- running -------------------------------------------------------------------------------

    def request_stop(self, reason: str, message: str) -> None:
        """Thread-safe: ask the main loop to drain."""
        self.requests.put(StopRequest(reason, message))

    def run(self) -> int:
        s = self.settings
        self.requests.install()
        self.runtime.start()
        for rotation in (self.rotation, self.serving_rotation):
            if rotation is not None:
                rotation.start()
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
        first = None
        while first is None:
            first = self.requests.get()
        if registrar.is_alive():
            registrar.join(1.0)
            if registrar.is_alive():  # still retrying against an API that does not answer
                self.node.stop()
        log.info("draining node %s: %s (%s)", s.node_name, first.reason, first.message)
        drainer = threading.Thread(target=self.node.drain, args=(first.reason, first.message), name="node-drain",
                                   daemon=True)
        drainer.start()
        hurried = False
        while drainer.is_alive():
            again = self.requests.get(timeout=0.5)
            if again is not None and again.reason == "Shutdown" and not hurried:
                hurried = True
                log.warning("%s while draining: skipping grace periods", again.message)
                self.node.hurry()
        self._shutdown()
        self.requests.uninstall()
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
        for rotation in (self.rotation, self.serving_rotation):
            if rotation is not None:
                rotation.stop()
        self.indexer.stop()
        self.runtime.stop()
        self.client.close()


def run(settings: Settings) -> int:
    """Run the node until it expires; return the process exit code."""
    app = App(settings)
    try:
        app.build()
    except (ConfigError, TLSFileError, KubeconfigError) as error:
        print(f"vkcmd: {error}", flush=True, file=sys.stderr)
        return 2
    except (bootstrap.BootstrapError, ApiError) as error:  # (never a credential in these messages)
        print(f"vkcmd: could not join with the bootstrap kubeconfig: {error}", flush=True, file=sys.stderr)
        return 1
    return app.run()
