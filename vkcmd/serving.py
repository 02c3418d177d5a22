"""The kubelet API's backend: the provider's pods, the runtime's usage, the containers' logs.

Adapts the node's pieces to ``vkcmd.kubeletapi.backend.Backend`` so that the
HTTP side stays free of process and pod internals.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import psutil

from vkcmd.kubeletapi import backend as api
from vkcmd.kubeletapi import tls
from vkcmd.provider import PodManager
from vkcmd.provider.podtable import StatsPod
from vkcmd.runtime import Runtime, execs
from vkcmd.runtime.usage import Usage
from vkcmd.runtime.spawn import RunInfo
from vkcmd import containerlogs
from vkcmd.containerlogs import LogIndexer
from vkcmd.timefmt import parse_time


class NodeBackend:
    """Implements the kubelet API's Backend over the provider, runtime and log indexer."""

    def __init__(self, provider: PodManager, runtime: Runtime, indexer: LogIndexer) -> None:
        self._provider = provider
        self._runtime = runtime
        self._indexer = indexer
        self._boot = psutil.boot_time()
        # what usage() made last, and of what: reused while neither the runs' usage nor the pods changed
        self._runs: Mapping[str, Any] | None = None
        self._view: Sequence[Any] | None = None
        self._pods: tuple[api.PodUsage, ...] = ()
        self._measured_at: float | None = None
        self._unstarted = False   # a pod without startTime: stamped with the time of each call
        self._pod_usage: dict[str, tuple[Any, tuple[str, ...], tuple, api.PodUsage]] = {}  # uid -> (entry, keys, runs, usage)

    def list_pods(self) -> Sequence[Mapping[str, Any]]:
        return self._provider.pods()

    def usage(self) -> api.UsageSnapshot:
        """The node now, the pods as the runtime's latest scan measured them: the same ``pods`` (the
        same ``PodUsage`` of a pod whose figures did not change) while they are the same, so that
        ``summary.compute`` and the answers built of it are made once per scan. One caller at a time
        (the kubelet API's ``StatsSource`` calls it under its lock)."""
        runs = self._runtime.usage()
        view = self._provider.stats_pods()
        host = self._runtime.node_usage()
        if runs is not self._runs or view is not self._view or self._unstarted:
            self._measure_pods(view, runs)
        node = api.NodeUsage(start_time=self._boot, cpu_seconds=host.cpu_seconds,
                             memory_working_set_bytes=host.memory_working_set_bytes,
                             memory_rss_bytes=host.memory_working_set_bytes,
                             memory_usage_bytes=host.memory_total_bytes - host.memory_free_bytes,
                             memory_available_bytes=host.memory_available_bytes)
        return api.UsageSnapshot(taken_at=host.timestamp, node=node, pods=self._pods, measured_at=self._measured_at)

    def _measure_pods(self, view: Sequence[StatsPod], runs: Mapping[str, Usage]) -> None:
        """The pods' usage from the runs' (all of one scan, at ``measured_at``); a pod whose entry and
        runs' figures are those of the last call keeps its ``PodUsage``."""
        measured_at = next(iter(runs.values())).timestamp if runs else None
        memo, kept, pods, unstarted = self._pod_usage, {}, [], False
        for entry in view:
            uid = entry.uid
            hit = memo.get(uid)
            if hit is not None and hit[0] is entry:
                keys = hit[1]
                measured = tuple(map(runs.get, keys))
                if _unchanged(measured, hit[2], measured_at):
                    pods.append(hit[3])
                    kept[uid] = hit
                    continue
            else:
                keys = tuple(f"{uid}/{name}" for name in entry.containers)
                measured = tuple(map(runs.get, keys))
            containers, time_free = [], entry.start_time is not None
            for name, run in zip(entry.containers, measured):
                if run is None:
                    continue
                stamp = None if run.timestamp == measured_at else run.timestamp
                time_free = time_free and stamp is None
                containers.append(api.ContainerUsage(
                    name, f"{uid}/{name}@{run.started_at}", run.started_at, run.cpu_seconds,
                    run.memory_working_set_bytes, run.memory_rss_bytes, run.memory_rss_bytes, run.processes,
                    timestamp=stamp))
            if entry.start_time is None:
                start_time, unstarted = time.time(), True
            elif hit is not None and hit[0].start_time == entry.start_time:
                start_time = hit[3].start_time
            else:
                start_time = parse_time(entry.start_time)
            usage = api.PodUsage(entry.namespace, entry.name, uid, start_time, tuple(containers))
            pods.append(usage)
            if time_free:
                kept[uid] = (entry, keys, measured, usage)
        self._pod_usage = kept
        self._pods, self._measured_at, self._unstarted = tuple(pods), measured_at, unstarted
        self._runs, self._view = runs, view

    def open_container_log(self, namespace: str, pod: str, container: str, options: api.LogOptions,
                           stop: threading.Event) -> Iterator[bytes]:
        found = self._provider.container_dir(namespace, pod, container)
        if found is None:
            if not any(p["metadata"]["namespace"] == namespace and p["metadata"]["name"] == pod
                       for p in self._provider.pods()):
                raise api.NotFound(f'pod "{pod}" not found in namespace "{namespace}" on this node')
            raise api.NotFound(f'container "{container}" not found in pod "{pod}"')
        directory, is_running = found
        try:
            return containerlogs.stream_logs(directory, containerlogs.LogOptions(**dataclasses.asdict(options)),
                                            is_running=is_running, indexer=self._indexer, stop=stop)
        except containerlogs.LogsUnavailable as error:
            raise api.BadRequest(str(error)) from None

    def attach_output(self, namespace: str, pod: str, container: str) -> _Output:
        found = self._provider.container_dir(namespace, pod, container)
        if found is None or not found[1]():
            raise api.NotFound(f'container not found ("{container}")')
        key = self._provider.run_key(namespace, pod, container)
        run = self._runtime.runs().get(key) if key else None
        return _Output(found[0], found[1], self._runtime.stdins.get(run.run_id) if run else None)

    def pod_address(self, namespace: str, pod: str) -> str:
        for found in self._provider.pods():
            if found["metadata"]["namespace"] == namespace and found["metadata"]["name"] == pod:
                return (found.get("status") or {}).get("podIP") or "127.0.0.1"
        raise api.NotFound(f'pod "{pod}" not found in namespace "{namespace}" on this node')

    def exec_target(self, namespace: str, pod: str, container: str) -> api.ExecTarget:
        key = self._provider.run_key(namespace, pod, container)
        run = self._runtime.runs().get(key) if key else None
        if run is None:
            raise api.NotFound(f'container not found ("{container}")')
        return _ExecTarget(run)


def _unchanged(runs: Sequence[Usage | None], before: Sequence[Usage | None], measured_at: float | None) -> bool:
    """Whether each container has the run it had, with the same figures, measured by the scan at ``measured_at``."""
    for run, was in zip(runs, before):
        if run is not was and (run is None or run.timestamp != measured_at or not run.same_figures(was)):
            return False
    return True


class _Output:
    """A running container's output from now on (``kubectl attach``): each file followed on its own."""

    def __init__(self, directory: str, is_running: Callable[[], bool], stdin: Any = None) -> None:
        self._directory = directory
        self._is_running = is_running
        self.stdin = stdin  # the run's kept stdin (``runtime.stdins.Stdin``) or None

    def follow(self, name: str, stop: threading.Event) -> Iterator[bytes]:
        """New bytes of ``stdout`` or ``stderr`` until the run ends or ``stop`` is set."""
        fd = os.open(os.path.join(self._directory, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb", buffering=0) as handle:
            handle.seek(0, os.SEEK_END)
            while not stop.is_set():
                data = handle.read(65536)
                if data:
                    yield data
                elif not self._is_running():
                    return
                else:
                    stop.wait(0.1)


class _ExecTarget:
    """A run of this node that commands can be started in (``kubectl exec``)."""

    def __init__(self, run: RunInfo) -> None:
        self._run = run

    def start(self, command: Sequence[str], *, tty: bool, stdin: bool) -> execs.Exec:
        try:
            return execs.start(self._run, list(command), tty=tty, stdin=stdin)
        except execs.ExecError as error:
            raise api.NonZeroExit(str(error), error.exit_code) from None


def tls_context(cert_file: str | None, key_file: str | None, *, state_dir: str, node_name: str,
                addresses: Sequence[str], client_ca: str | None) -> ssl.SSLContext:
    """The kubelet API's server context: the given pair or the self-signed one; raises tls.TLSFileError."""
    cert, key = tls.serving_pair(cert_file, key_file, state_dir=state_dir, node_name=node_name, addresses=addresses)
    return tls.server_context(cert, key, client_ca)
