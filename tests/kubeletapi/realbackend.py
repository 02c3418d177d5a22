"""A small real Backend for the kubelet API tests: real container dirs, real processes, psutil.

Each container is a real process started in its own session, writing its real
``stdout`` / ``stderr`` files under ``<root>/<ns>/<pod>/containers/<name>/``;
usage is measured with psutil; logs are read from those files (a simple reader:
stdout then stderr, line timestamps from the file's mtime). It stands in for the
app's backend until the runtime is wired, and is not part of vkcmd.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from vkcmd.kubeletapi.backend import (BadRequest, ContainerUsage, LogOptions, NodeUsage, NotFound, PodUsage,
                                      UsageSnapshot)

CPU_FLOOR_SECONDS = 1e-6  # the backend's promise: a live run never reports zero CPU


@dataclass
class Container:
    name: str
    directory: Path
    process: subprocess.Popen
    started: float

    @property
    def run_id(self) -> str:
        return f"{self.process.pid}:{self.started}"

    def running(self) -> bool:
        return self.process.poll() is None


@dataclass
class Pod:
    namespace: str
    name: str
    uid: str
    started: float
    containers: dict[str, Container] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
                "spec": {"containers": [{"name": n, "image": "none"} for n in self.containers]},
                "status": {"phase": "Running",
                           "startTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started))}}


def _rfc3339_nano(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


class RealBackend:
    """Pods of real processes; thread-safe enough for the tests (pods are added before requests)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.pods: dict[tuple[str, str], Pod] = {}
        self.usage_calls = 0
        self._lock = threading.Lock()

    # --- set-up ---
    def add_pod(self, namespace: str, name: str, containers: dict[str, Sequence[str]], uid: str | None = None) -> Pod:
        pod = Pod(namespace, name, uid or str(uuid.uuid4()), time.time())
        for container, argv in containers.items():
            directory = self.root / namespace / name / "containers" / container
            directory.mkdir(parents=True, exist_ok=True)
            with open(directory / "stdout", "wb") as out, open(directory / "stderr", "wb") as err:
                process = subprocess.Popen(list(argv), stdout=out, stderr=err, cwd=directory,
                                           start_new_session=True)
            (directory / "pgid").write_text(f"{process.pid}\n")
            pod.containers[container] = Container(container, directory, process, time.time())
        with self._lock:
            self.pods[(namespace, name)] = pod
        return pod

    def close(self) -> None:
        for pod in self.pods.values():
            for container in pod.containers.values():
                if container.running():
                    try:
                        os.killpg(container.process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                container.process.wait()

    # --- Backend ---
    def list_pods(self) -> list[dict]:
        with self._lock:
            return [pod.as_dict() for pod in self.pods.values()]

    def usage(self) -> UsageSnapshot:
        self.usage_calls += 1
        now = time.time()
        cpu = psutil.cpu_times()
        busy = sum(cpu) - cpu.idle - getattr(cpu, "iowait", 0.0)
        memory = psutil.virtual_memory()
        node = NodeUsage(start_time=psutil.boot_time(), cpu_seconds=busy,
                         memory_working_set_bytes=memory.total - memory.available,
                         memory_rss_bytes=memory.used, memory_usage_bytes=memory.total - memory.free,
                         memory_available_bytes=memory.available)
        pods = []
        with self._lock:
            snapshot = list(self.pods.values())
        for pod in snapshot:
            containers = []
            for container in pod.containers.values():
                measured = self._measure(container)
                if measured is not None:
                    containers.append(measured)
            pods.append(PodUsage(pod.namespace, pod.name, pod.uid, pod.started, tuple(containers)))
        return UsageSnapshot(now, node, tuple(pods))

    @staticmethod
    def _measure(container: Container) -> ContainerUsage | None:
        try:
            leader = psutil.Process(container.process.pid)
            processes = [leader, *leader.children(recursive=True)]
            cpu, rss = 0.0, 0
            for process in processes:
                times = process.cpu_times()
                cpu += times.user + times.system
                rss += process.memory_info().rss
        except psutil.NoSuchProcess:
            return None
        if leader.status() == psutil.STATUS_ZOMBIE:
            return None
        return ContainerUsage(name=container.name, run_id=container.run_id, start_time=container.started,
                              cpu_seconds=max(cpu, CPU_FLOOR_SECONDS), memory_working_set_bytes=max(rss, 1),
                              memory_rss_bytes=rss, memory_usage_bytes=rss, process_count=len(processes))

    def open_container_log(self, namespace: str, pod: str, container: str, options: LogOptions,
                           stop: threading.Event) -> Iterator[bytes]:
        found = self.pods.get((namespace, pod))
        if found is None:
            raise NotFound(f'pod "{pod}" does not exist')
        run = found.containers.get(container)
        if run is None:
            raise NotFound(f'container "{container}" not found in pod "{pod}"')
        if options.previous:
            raise BadRequest(f'previous terminated container "{container}" in pod "{pod}" not found')
        return self._read(run, options, stop)

    @staticmethod
    def _read(run: Container, options: LogOptions, stop: threading.Event) -> Iterator[bytes]:
        stdout = run.directory / "stdout"
        sent = 0

        def decorate(lines: list[bytes]) -> bytes:
            if options.timestamps:
                stamp = _rfc3339_nano(stdout.stat().st_mtime_ns).encode()
                lines = [stamp + b" " + line for line in lines]
            return b"".join(lines)

        def limited(data: bytes) -> bytes:
            nonlocal sent
            if options.limit_bytes is not None:
                data = data[:max(0, options.limit_bytes - sent)]
            sent += len(data)
            return data

        with open(stdout, "rb") as handle:
            existing = handle.read()
            lines = existing.splitlines(keepends=True)
            if options.since_time_ns is not None and stdout.stat().st_mtime_ns < options.since_time_ns:
                lines = []
            if options.tail_lines is not None:
                lines = lines[-options.tail_lines:] if options.tail_lines else []
            pending = b""
            if lines and not lines[-1].endswith(b"\n"):
                pending = lines.pop()
            if lines:
                yield limited(decorate(lines))
            if not options.follow:
                return
            while not stop.is_set():
                if options.limit_bytes is not None and sent >= options.limit_bytes:
                    return
                more = handle.read()
                if more:
                    pending += more
                    complete, _, pending = pending.rpartition(b"\n")
                    if complete:
                        yield limited(decorate([line + b"\n" for line in complete.split(b"\n")]))
                    continue
                if not run.running():
                    pending += handle.read()  # what the run wrote just before it ended
                    rest = pending.splitlines(keepends=True)
                    if rest:
                        yield limited(decorate(rest))
                    return
                stop.wait(0.05)
