"""Runs of one container, performed: stage and launch, record an exit, adopt a run found on disk.

Called on the pod's worker by the manager; what follows an exit (restart, back-off,
the pod failing) is decided by ``decide.after_exit``. Staging and launch failures of
any kind end in a waiting reason, an event and a retry — never a container left in
Staging. It knows the records, the runtime and the sink it is given, not the API.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from vkcmd.machines import ContainerEvent as CE, ContainerState as CS
from vkcmd.pods import ConfigError, Resolver, Workspace, stage_container
from vkcmd.pods.errors import NOT_YET
from vkcmd.pods.podstatus import Termination
from vkcmd.provider import decide
from vkcmd.provider.records import ContainerRecord, PodRecord
from vkcmd.provider.termination import prepare as prepare_message, termination_message
from vkcmd.runtime import ExitReport, LaunchError, LaunchSpec, Recovered, Runtime

log = logging.getLogger("vkcmd.provider")

NORMAL, WARNING = "Normal", "Warning"
CONFIG_RETRY = 10.0  # seconds between retries of a container waiting on a config error


class LogWatcher(Protocol):
    def watch(self, container_dir: str) -> None: ...
    def unwatch(self, container_dir: str) -> None: ...
    def rotate(self, container_dir: str) -> None: ...
    def notify(self, container_dir: str) -> None: ...


class Launcher:
    """Starts, records and adopts container runs for the manager."""

    def __init__(self, runtime: Runtime, workspace: Workspace, resolver: Resolver, sink: Any, *, home: str,
                 base_env: Mapping[str, str], backoff: tuple[float, float], logs: LogWatcher | None,
                 metrics: Any, clock: Callable[[], float], wake: Callable[[str, float], None],
                 stopped: threading.Event) -> None:
        self._runtime = runtime
        self._workspace = workspace
        self._resolver = resolver
        self._sink = sink
        self._home = home
        self._base_env = dict(base_env)
        self._backoff = backoff
        self._logs = logs
        self._metrics = metrics
        self._clock = clock
        self._wake = wake
        self._stopped = stopped

    # --- runs found on disk ---------------------------------------------------------------

    def adopt(self, record: PodRecord, take: Callable[[str], Recovered | None]) -> None:
        """First sync after a restart of vkcmd: take over the runs found on disk."""
        for container in record.containers():
            if container.state is not CS.PENDING:
                continue
            found = take(container.key)
            if found is None:
                continue
            previous = _api_container_status(record.pod, container.name)
            container.restart_count = int(previous.get("restartCount") or 0)
            container.container_dir = found.info.container_dir if found.info else None
            if found.info is not None:
                container.run_id = found.info.run_id
                container.started_at = found.info.started_at
                container.container_id = f"vkcmd://{found.info.pgid}"
            if found.running:
                container.machine.fire(CE.ADOPT, reason="running before the restart of vkcmd")
                container.reset_probes(self._clock())
                container.ready = container.ready or bool(previous.get("ready"))
                if self._logs and container.container_dir:
                    self._logs.watch(container.container_dir)
            else:
                container.machine.fire(CE.RECOVER_EXIT, reason="ended while vkcmd was down")
                self.record_termination(record, container, found.exit, self._clock())

    # --- exits ----------------------------------------------------------------------------

    def apply_exit(self, record: PodRecord, report: ExitReport, now: float) -> None:
        container = record.by_key(report.key)
        if container is None or report.run_id != container.run_id or container.state is not CS.RUNNING:
            return
        container.machine.fire(CE.EXITED, reason=f"{report.reason} ({report.exit_code})")
        if self._metrics is not None:
            self._metrics.container_exited(report.reason)
        if self._logs is not None and container.container_dir:
            self._logs.notify(container.container_dir)  # a follower of its logs ends now, not at its next poll
        self.record_termination(record, container, report, now)

    def record_termination(self, record: PodRecord, container: ContainerRecord, report: ExitReport | None,
                           now: float) -> None:
        if report is None:
            return
        started = report.started_at or container.started_at
        message = report.message
        if container.container_dir and report.reason != "StartError":
            message = termination_message(container.container_dir, container.spec, report.exit_code) or message
        container.termination = Termination(
            exit_code=report.exit_code, reason=report.reason, started_at=started,
            finished_at=report.finished_at or now, message=message, signal=report.signal,
            container_id=container.container_id)
        container.started_at = None
        ran = (report.finished_at or now) - (started or now)
        after = decide.after_exit(decide.restart_policy(record.pod), container.init, report.exit_code, ran,
                                  container.crashes, self._backoff,
                                  ending=record.ending is not None or self._stopped.is_set(),
                                  sidecar=container.sidecar)
        container.restarting = after.again
        record.init_failed = record.init_failed or after.init_failed
        if not after.again:
            return
        container.crashes = after.crashes
        container.restart_at = now + after.delay
        if after.delay > 0:
            container.waiting_reason = "CrashLoopBackOff"
            container.waiting_message = (f"back-off {_duration(after.delay)} restarting failed container="
                                         f"{container.name} pod={record.name}_{record.namespace}({record.uid})")
            self._sink.event(record.pod, WARNING, "BackOff", "Back-off restarting failed container "
                             f"{container.name} in pod {record.name}_{record.namespace}({record.uid})",
                             container.name)
            self._wake(record.uid, after.delay)

    # --- starting -------------------------------------------------------------------------

    def start(self, record: PodRecord, container: ContainerRecord, now: float) -> None:
        """Stage and launch a container that is due (Pending, or Exited and restarting)."""
        if container.state is CS.EXITED:
            container.machine.fire(CE.RESTART, reason=f"restartPolicy, after {container.crashes} end(s)")
        else:
            container.machine.fire(CE.STAGE)
        try:
            self._stage_and_launch(record, container, now)
        except Exception as error:  # a cache, the disk, a bug: the container waits with the reason, retried
            log.exception("starting %s failed", container.machine.id)
            if container.state is CS.STAGING:
                container.start_failures += 1
                delay = min(CONFIG_RETRY * 2 ** (container.start_failures - 1), self._backoff[1])
                self._wait_and_retry(record, container, "CreateContainerError",
                                     str(error) or type(error).__name__, delay)

    def _stage_and_launch(self, record: PodRecord, container: ContainerRecord, now: float) -> None:
        try:
            staged = stage_container(record.pod, container.spec, self._workspace, self._resolver,
                                     home=self._home, base_env=self._base_env)
        except ConfigError as error:
            self._wait_and_retry(record, container, error.reason, error.message, event=error.cause != NOT_YET)
            return
        for event in staged.events:
            self._sink.event(record.pod, WARNING, event.reason, event.message, container.name)
        container.container_dir = staged.container_dir
        container.image_id = staged.image_id
        if self._logs is not None and container.termination is not None:
            self._logs.rotate(staged.container_dir)  # the run before becomes "previous"
        prepare_message(staged.container_dir, container.spec)
        spec = LaunchSpec(key=container.key, argv=staged.argv, env=staged.env, cwd=staged.cwd,
                          container_dir=staged.container_dir, memory_limit_bytes=staged.memory_limit_bytes,
                          cpu_limit_cores=staged.cpu_limit_cores, stdin=bool(container.spec.get("stdin")),
                          stdin_once=bool(container.spec.get("stdinOnce")), tty=bool(container.spec.get("tty")))
        try:
            info = self._runtime.launch(spec)
        except LaunchError as error:
            container.machine.fire(CE.START_FAILED, reason=str(error))
            self._sink.event(record.pod, WARNING, "Failed", f"Error: {error}", container.name)
            self.record_termination(record, container, ExitReport(container.key, "", 128, None, now,
                                                                  "StartError", now, str(error)), now)
            return
        if self._metrics is not None:
            self._metrics.container_started("Restarted" if container.termination is not None else "Started")
        if container.termination is not None:
            container.restart_count += 1
            container.last_termination = container.termination
        container.termination = None
        container.restarting = False
        container.start_failures = 0
        container.prestop = None
        container.run_id = info.run_id
        container.started_at = info.started_at
        container.container_id = f"vkcmd://{info.pgid}"
        container.env, container.cwd = staged.env, staged.cwd
        container.reset_probes(info.started_at)
        container.waiting_reason, container.waiting_message = "ContainerCreating", ""
        container.machine.fire(CE.STARTED, reason=f"pgid {info.pgid}")
        if self._logs is not None:
            self._logs.watch(staged.container_dir)
        self._sink.event(record.pod, NORMAL, "Created", f"Created container {container.name}", container.name)
        self._sink.event(record.pod, NORMAL, "Started", f"Started container {container.name}", container.name)

    def _wait_and_retry(self, record: PodRecord, container: ContainerRecord, reason: str, message: str,
                        delay: float = CONFIG_RETRY, event: bool = True) -> None:
        """Staging failed (or waits on the resolver): the container waits with ``reason`` and is
        staged again after ``delay``."""
        container.machine.fire(CE.CONFIG_ERROR, reason=message)
        container.waiting_reason, container.waiting_message = reason, message
        if event:
            self._sink.event(record.pod, WARNING, "Failed", f"Error: {message}", container.name)
        self._wake(record.uid, delay)


def _api_container_status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    status = pod.get("status") or {}
    for entry in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if entry.get("name") == name:
            return entry
    return {}


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"
