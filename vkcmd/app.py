"""Wires the node's pieces together and runs them (the only module that knows all layers).

The main thread owns the life of the process: it starts the pieces, then waits
for a reason to stop — a signal, the walltime margin, an operator request —
and drains. Signal handlers only enqueue; the main loop acts.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from dataclasses import dataclass

from fsm import LogObserver
from vkcmd.config import Settings
from vkcmd.kube.client import KubeClient
from vkcmd.kube.node import NodeConfig, NodeController
from vkcmd.kube.podsapi import ApiPodLifecycle
from vkcmd.runtime.host import host_facts

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


class App:
    """The running node: constructed without side effects, then :meth:`run`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.requests: queue.Queue[StopRequest] = queue.Queue()
        self._signals = 0

    def request_stop(self, reason: str, message: str) -> None:
        """Thread-safe (and signal-safe): ask the main loop to drain."""
        self.requests.put(StopRequest(reason, message))

    def _on_signal(self, signum: int, _frame) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        self.requests.put(StopRequest("Shutdown", f"received {name}" + (" again" if self._signals > 1 else "")))

    def run(self) -> int:
        settings = self.settings
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        client = KubeClient.from_kubeconfig(settings.kubeconfig)
        trace = LogObserver()
        pods = ApiPodLifecycle(client, settings.node_name)
        node = NodeController(client, node_config(settings), host_facts(), pods, observers=[trace],
                              on_drain_request=self.request_stop)
        starter = threading.Thread(target=node.start, name="node-register", daemon=True)
        starter.start()
        pods.start()
        first = self.requests.get()
        while starter.is_alive():  # a signal during registration: let it finish or give up
            starter.join(0.5)
            if not starter.is_alive():
                break
            node.stop()
        log.info("draining node %s: %s (%s)", settings.node_name, first.reason, first.message)
        drainer = threading.Thread(target=node.drain, args=(first.reason, first.message), name="node-drain",
                                   daemon=True)
        drainer.start()
        while drainer.is_alive():
            try:
                again = self.requests.get(timeout=0.5)
            except queue.Empty:
                continue
            if again.reason == "Shutdown":
                log.warning("%s while draining: skipping grace periods", again.message)
                node.hurry()
        pods.stop()
        node.stop()
        client.close()
        log.info("node %s expired; exiting", settings.node_name)
        return 0


def run(settings: Settings) -> int:
    """Run the node until it expires; return the process exit code."""
    return App(settings).run()
