"""The provider: runs this node's pods on the process runtime.

Level-triggered, like a kubelet's pod workers: every input (a pod from the
API, a process exit, an object that appeared, a timer) only marks the pod's
key dirty; a small pool of workers then *syncs* the pod — applies exits,
decides restarts and back-off, stages and launches what should run, ends what
should end — and publishes the pod's status. No thread per pod: back-offs and
deadlines are delayed adds on one timer.

It knows pods as plain dicts and processes through ``vkcmd.runtime``; it
never talks to the API server: the Kubernetes side implements :class:`PodSink`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from vkcmd.machines import ContainerEvent as CE, ContainerState as CS
from vkcmd.pods import ConfigError, Resolver, Workspace, stage_container
from vkcmd.pods.errors import CONTAINER_CREATING, NOT_YET
from vkcmd.pods.podstatus import Termination, pod_status
from vkcmd.pods.restart import crashes_after_run, restart_delay, should_restart
from vkcmd.provider.probing import ProbeMixin
from vkcmd.provider.records import ContainerRecord, Ending, PodRecord, grace_period, new_record
from vkcmd.runtime import ExitReport, LaunchError, LaunchSpec, Recovered, Runtime
from vkcmd.runtime.probes import ProbeRunner
from vkcmd.timefmt import parse_time
from vkcmd.workqueue import WorkQueue, run_workers

log = logging.getLogger("vkcmd.provider")

NORMAL, WARNING = "Normal", "Warning"
WAITS_ON_OBJECTS = ("CreateContainerConfigError", CONTAINER_CREATING)  # retried when an object changes
CONFIG_RETRY = 10.0  # seconds between retries of a container waiting on a config error
SYNC_RETRY = 10.0  # seconds before a pod whose sync raised is synced again
DEADLINE_REASON = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


class PodSink(Protocol):
    """What the provider needs from the Kubernetes side."""

    def status_changed(self, uid: str) -> None:
        """The published status of ``uid`` changed: write it (soon, coalesced)."""

    def pod_gone(self, pod: dict[str, Any], final_status: dict[str, Any] | None) -> None:
        """The pod's processes and workspace are gone: write ``final_status`` (the terminated
        containers) if it is not written yet, then remove the API object (grace 0)."""

    def event(self, pod: dict[str, Any], event_type: str, reason: str, message: str,
              container: str | None = None) -> None:
        """Post an event on the pod."""


class ProviderMetrics(Protocol):
    """Counters the provider feeds (``vkcmd.kubeletapi.metrics.Metrics`` implements them)."""

    def container_started(self, reason: str = "Started") -> None: ...
    def container_exited(self, reason: str) -> None: ...
    def observe_pod_start(self, seconds: float) -> None: ...


class LogWatcher(Protocol):
    def watch(self, container_dir: str) -> None: ...
    def unwatch(self, container_dir: str) -> None: ...
    def rotate(self, container_dir: str) -> None: ...
    def notify(self, container_dir: str) -> None: ...


class PodManager(ProbeMixin):
    """Drives every pod bound to this node. Construct, :meth:`start`, feed, :meth:`stop`."""

    def __init__(self, runtime: Runtime, workspace: Workspace, resolver: Resolver, sink: PodSink, *,
                 pod_ip: str, home: str, base_env: Mapping[str, str], backoff_initial: float = 10.0,
                 backoff_max: float = 300.0, logs: LogWatcher | None = None,
                 clock: Callable[[], float] = time.time, observers: Iterable[Callable] = (),
                 workers: int = 4, probes: ProbeRunner | None = None,
                 metrics: ProviderMetrics | None = None) -> None:
        self._runtime = runtime
        self._workspace = workspace
        self._resolver = resolver
        self._sink = sink
        self._pod_ip = pod_ip
        self._home = home
        self._base_env = dict(base_env)
        self._backoff = (backoff_initial, backoff_max)
        self._logs = logs
        self._clock = clock
        self._observers = list(observers)
        self._workers = workers
        self._probes = probes
        self._metrics = metrics
        self._lock = threading.Lock()
        self._records: dict[str, PodRecord] = {}
        self._recovered: dict[str, Recovered] = {}
        self._queue = WorkQueue("pods")
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Re-adopt runs left by an earlier vkcmd, then start the workers."""
        self._recovered = {r.key: r for r in self._runtime.recover()}
        if self._recovered:
            log.info("found %d run(s) from before the restart", len(self._recovered))
        self._threads = run_workers(self._queue, self._sync_or_retry, self._workers)

    def stop(self) -> None:
        """Stop the workers; processes keep running (vkcmd may be restarting)."""
        self._stopped.set()
        self._queue.shutdown()
        for thread in self._threads:
            thread.join(5)

    # --- input ----------------------------------------------------------------------------

    def upsert(self, pod: dict[str, Any]) -> None:
        """A pod bound to this node was added or changed in the API."""
        uid = pod["metadata"]["uid"]
        with self._lock:
            record = self._records.get(uid)
            if record is None:
                if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and \
                        not pod["metadata"].get("deletionTimestamp") and not self._has_recovered(uid):
                    return  # finished before we knew it; nothing to run, nothing to report
                record = new_record(pod, self._start_time(pod), self._observers)
                self._records[uid] = record
            else:
                record.pod = pod
        self._queue.add(uid)

    def remove(self, pod: dict[str, Any]) -> None:
        """The pod is gone from the API: end its processes and clean up, writing nothing there."""
        uid = pod["metadata"]["uid"]
        with self._lock:
            record = self._records.get(uid)
            if record is None:
                return
            record.removed = True
        self._queue.add(uid)

    def resync(self, uids: Iterable[str]) -> None:
        """After a full list of the API: runs of pods that no longer exist are killed and cleaned."""
        alive = set(uids)
        with self._lock:
            orphans = [r for key, r in self._recovered.items() if key.split("/", 1)[0] not in alive]
            for orphan in orphans:
                self._recovered.pop(orphan.key, None)
        for orphan in orphans:
            log.info("run %s belongs to a pod deleted while vkcmd was down; removing it", orphan.key)
            self._runtime.forget(orphan.key)
            self._remove_workspace_of(orphan.info.container_dir if orphan.info else "")

    def object_changed(self, kind: str, namespace: str, name: str) -> None:
        """A ConfigMap or Secret changed: retry the pods of that namespace waiting on config."""
        with self._lock:
            waiting = [r.uid for r in self._records.values()
                       if (not namespace or r.namespace == namespace)
                       and any(c.waiting_reason in WAITS_ON_OBJECTS for c in r.containers())]
        for uid in waiting:
            self._queue.add(uid)

    def on_exit(self, report: ExitReport) -> None:
        """From the runtime's reaper: a run ended (never blocks)."""
        uid = report.key.split("/", 1)[0]
        with self._lock:
            record = self._records.get(uid)
            if record is None:
                return
            record.exits.append(report)
        self._queue.add(uid)

    # --- output ---------------------------------------------------------------------------

    def status(self, uid: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(pod metadata, published status) of ``uid``, or None when unknown or removed."""
        with self._lock:
            record = self._records.get(uid)
            if record is None or record.status is None or record.removed:
                return None
            return record.pod["metadata"], record.status

    def pods(self) -> list[dict[str, Any]]:
        """Every pod this node runs, with its current status (for the kubelet API's /pods)."""
        with self._lock:
            return [{**r.pod, "status": r.status or r.pod.get("status") or {}} for r in self._records.values()]

    def container_dir(self, namespace: str, name: str, container: str) -> tuple[str, Callable[[], bool]] | None:
        """Where a container's output is, and a callable telling whether it still runs."""
        with self._lock:
            record = next((r for r in self._records.values() if r.namespace == namespace and r.name == name), None)
            found = record.container(container) if record else None
        if found is None:
            return None
        directory = found.container_dir or self._workspace.container_dir(namespace, name, container)
        return directory, lambda: found.state is CS.RUNNING

    def run_key(self, namespace: str, name: str, container: str) -> str | None:
        with self._lock:
            record = next((r for r in self._records.values() if r.namespace == namespace and r.name == name), None)
            found = record.container(container) if record else None
        return found.key if found else None

    # --- drain ----------------------------------------------------------------------------

    def max_grace_period(self) -> float:
        with self._lock:
            return max((grace_period(r.pod) for r in self._records.values()), default=0.0)

    def end_all(self, reason: str, message: str, fast: bool) -> None:
        """Terminate every pod (grace unless ``fast``); each ends Failed with ``reason``."""
        with self._lock:
            records = list(self._records.values())
        for record in records:
            with self._lock:
                if record.finished and record.ending is None:
                    continue  # already terminal (Succeeded/Failed): a drain does not rewrite history
                if record.ending is None or not record.ending.delete:
                    record.ending = Ending(reason, message, 0.0 if fast else grace_period(record.pod), "Failed",
                                           delete=False)
            self._queue.add(record.uid)

    def hurry(self) -> None:
        """Shorten every grace period in progress to nothing."""
        with self._lock:
            records = [r for r in self._records.values() if r.ending is not None]
            for record in records:
                record.ending.grace = 0.0
                record.ending.signalled.clear()
        for record in records:
            self._queue.add(record.uid)

    def all_stopped(self) -> bool:
        """True when no pod has a live process or a pending ending."""
        with self._lock:
            return all(not r.live() and (r.ending is None or r.finished or r.cleaned)
                       for r in self._records.values())

    # --- the sync ---------------------------------------------------------------------------

    def _sync_or_retry(self, uid: str) -> None:
        """A sync that fails unexpectedly is reported on the pod and retried; the node carries on."""
        try:
            self._sync(uid)
        except Exception as error:
            log.exception("syncing pod %s failed; retrying in %.0fs", uid, SYNC_RETRY)
            with self._lock:
                record = self._records.get(uid)
            if record is not None and not record.removed:
                self._sink.event(record.pod, WARNING, "FailedSync", f"error syncing pod: {error}")
            self._queue.add_after(uid, SYNC_RETRY)

    def _sync(self, uid: str) -> None:
        with self._lock:
            record = self._records.get(uid)
            if record is None:
                return
            exits, record.exits = record.exits, []
            results, record.probe_results = record.probe_results, []
            pod = record.pod
        self._adopt(record)
        now = self._clock()
        for report in exits:
            self._apply_exit(record, report, now)
        for key, run_id, kind, result in results:
            self._apply_probe(record, key, run_id, kind, result)
        self._check_ending(record, pod, now)
        if record.ending is not None:
            self._end(record, now)
        elif not record.finished:
            self._advance(record, now)
            self._run_probes(record, now)
        self._publish(record, now)

    def _adopt(self, record: PodRecord) -> None:
        """First sync after a restart of vkcmd: take over the runs found on disk."""
        for container in record.containers():
            if container.state is not CS.PENDING:
                continue
            with self._lock:
                found = self._recovered.pop(container.key, None)
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
                self._record_termination(record, container, found.exit, self._clock(), recovered=True)

    def _apply_exit(self, record: PodRecord, report: ExitReport, now: float) -> None:
        container = record.by_key(report.key)
        if container is None or report.run_id != container.run_id or container.state is not CS.RUNNING:
            return
        container.machine.fire(CE.EXITED, reason=f"{report.reason} ({report.exit_code})")
        if self._metrics is not None:
            self._metrics.container_exited(report.reason)
        if self._logs is not None and container.container_dir:
            self._logs.notify(container.container_dir)  # a follower of its logs ends now, not at its next poll
        self._record_termination(record, container, report, now)

    def _record_termination(self, record: PodRecord, container: ContainerRecord, report: ExitReport | None,
                            now: float, recovered: bool = False) -> None:
        if report is None:
            return
        started = report.started_at or container.started_at
        container.termination = Termination(
            exit_code=report.exit_code, reason=report.reason, started_at=started,
            finished_at=report.finished_at or now, message=report.message, signal=report.signal,
            container_id=container.container_id)
        container.started_at = None
        if record.ending is not None or self._stopped.is_set():
            container.restarting = False
            return
        policy = (record.pod.get("spec") or {}).get("restartPolicy", "Always")
        if container.init:
            again = report.exit_code != 0 and policy != "Never"
            if report.exit_code != 0 and policy == "Never":
                record.init_failed = True
        else:
            again = should_restart(policy, report.exit_code)
        container.restarting = again
        if not again:
            return
        ran = (report.finished_at or now) - (started or now)
        container.crashes = crashes_after_run(container.crashes, ran)
        delay = restart_delay(container.crashes, *self._backoff)
        container.restart_at = now + delay
        if delay > 0:
            container.waiting_reason = "CrashLoopBackOff"
            container.waiting_message = (f"back-off {_duration(delay)} restarting failed container="
                                         f"{container.name} pod={record.name}_{record.namespace}({record.uid})")
            self._sink.event(record.pod, WARNING, "BackOff", "Back-off restarting failed container "
                             f"{container.name} in pod {record.name}_{record.namespace}({record.uid})",
                             container.name)
            self._queue.add_after(record.uid, delay)

    def _check_ending(self, record: PodRecord, pod: dict[str, Any], now: float) -> None:
        """Start ending the pod when it is deleted, removed, or past its deadline."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        deleting = bool(meta.get("deletionTimestamp")) or record.removed
        if deleting and (record.ending is None or not record.ending.delete):
            grace = grace_period(pod)
            if not record.removed:
                grace = float(meta.get("deletionGracePeriodSeconds", grace))
            previous = record.ending
            record.ending = Ending(previous.reason if previous else "", previous.message if previous else "",
                                   min(grace, previous.grace) if previous else grace,
                                   previous.phase if previous else None, delete=True)
            return
        if deleting:
            grace = float(meta.get("deletionGracePeriodSeconds", record.ending.grace))
            if grace < record.ending.grace:
                record.ending.grace = grace
                record.ending.signalled.clear()
            return
        deadline = spec.get("activeDeadlineSeconds")
        if record.ending is None and deadline is not None and not record.deadline_done and not record.finished:
            remaining = record.start_time + float(deadline) - now
            if remaining <= 0:
                record.deadline_done = True
                record.ending = Ending(DEADLINE_REASON, DEADLINE_MESSAGE, grace_period(pod), "Failed", delete=False)
                self._sink.event(pod, NORMAL, DEADLINE_REASON, DEADLINE_MESSAGE)
            else:
                self._queue.add_after(record.uid, remaining)

    def _end(self, record: PodRecord, now: float) -> None:
        ending = record.ending
        for container in record.containers():
            if container.state in (CS.PENDING, CS.STAGING):
                container.machine.fire(CE.ABANDON, reason=ending.reason or "pod deleted")
                container.restarting = False
            elif container.state is CS.EXITED:
                container.restarting = False
            elif container.key not in ending.signalled:
                ending.signalled.add(container.key)
                if ending.grace > 0:
                    self._sink.event(record.pod, NORMAL, "Killing", f"Stopping container {container.name}",
                                     container.name)
                self._runtime.terminate(container.key, ending.grace,
                                        on_done=lambda _key, uid=record.uid: self._queue.add(uid))
        if record.live():
            return
        if ending.delete and not record.cleaned:
            record.cleaned = record.finished = True
            self._publish(record, now)  # the terminated statuses, written before the pod goes
            for container in record.containers():
                self._runtime.forget(container.key)
                if self._logs and container.container_dir:
                    self._logs.unwatch(container.container_dir)
            try:
                self._workspace.remove_pod(record.namespace, record.name)
            except Exception:
                log.exception("could not remove the workspace of pod %s", record.key)
            if hasattr(self._resolver, "forget_pod"):
                self._resolver.forget_pod(record.uid)
            if not record.removed:
                with self._lock:
                    final = record.status
                self._sink.pod_gone(record.pod, final)
            with self._lock:
                self._records.pop(record.uid, None)
        elif not ending.delete:
            record.finished = True

    def _advance(self, record: PodRecord, now: float) -> None:
        """Start whatever should run now: init containers in order, then the app containers."""
        if record.init_failed:
            record.finished = True
            return
        for container in record.init:
            if container.succeeded():
                continue
            if container.state is CS.RUNNING:
                return
            self._start_if_due(record, container, now)
            return
        for container in record.app:
            self._start_if_due(record, container, now)
        policy = (record.pod.get("spec") or {}).get("restartPolicy", "Always")
        if all(c.state is CS.EXITED and not c.restarting for c in record.app) and policy != "Always":
            record.finished = True

    def _start_if_due(self, record: PodRecord, container: ContainerRecord, now: float) -> None:
        if container.state is CS.RUNNING or container.state is CS.STAGING:
            return
        if container.state is CS.EXITED:
            if not container.restarting:
                return
            if container.restart_at is not None and now < container.restart_at:
                self._queue.add_after(record.uid, container.restart_at - now)
                return
            container.machine.fire(CE.RESTART, reason=f"restartPolicy, after {container.crashes} end(s)")
        else:
            container.machine.fire(CE.STAGE)
        self._stage_and_launch(record, container, now)

    def _stage_and_launch(self, record: PodRecord, container: ContainerRecord, now: float) -> None:
        try:
            staged = stage_container(record.pod, container.spec, self._workspace, self._resolver,
                                     home=self._home, base_env=self._base_env)
        except ConfigError as error:
            self._wait_and_retry(record, container, error.reason, error.message, event=error.cause != NOT_YET)
            return
        except Exception as error:  # an unexpected failure (a cache, the disk): the container waits, retried
            log.exception("staging %s failed", container.machine.id)
            self._wait_and_retry(record, container, "CreateContainerError", str(error))
            return
        for event in staged.events:
            self._sink.event(record.pod, WARNING, event.reason, event.message, container.name)
        container.container_dir = staged.container_dir
        container.image_id = staged.image_id
        if self._logs is not None and container.termination is not None:
            self._logs.rotate(staged.container_dir)  # the run before becomes "previous"
        spec = LaunchSpec(key=container.key, argv=staged.argv, env=staged.env, cwd=staged.cwd,
                          container_dir=staged.container_dir, memory_limit_bytes=staged.memory_limit_bytes,
                          cpu_limit_cores=staged.cpu_limit_cores)
        try:
            info = self._runtime.launch(spec)
        except LaunchError as error:
            container.machine.fire(CE.START_FAILED, reason=str(error))
            self._sink.event(record.pod, WARNING, "Failed", f"Error: {error}", container.name)
            self._record_termination(record, container, ExitReport(container.key, "", 128, None, now,
                                                                   "StartError", now, str(error)), now)
            return
        if self._metrics is not None:
            self._metrics.container_started("Restarted" if container.termination is not None else "Started")
        if container.termination is not None:
            container.restart_count += 1
            container.last_termination = container.termination
        container.termination = None
        container.restarting = False
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
                        event: bool = True) -> None:
        """Staging failed (or waits on the resolver): the container waits with ``reason``, staged again later."""
        container.machine.fire(CE.CONFIG_ERROR, reason=message)
        container.waiting_reason, container.waiting_message = reason, message
        if event:
            self._sink.event(record.pod, WARNING, "Failed", f"Error: {message}", container.name)
        self._queue.add_after(record.uid, CONFIG_RETRY)

    def _publish(self, record: PodRecord, now: float) -> None:
        if record.removed:
            return
        ending = record.ending
        phase = reason = message = None
        if ending is not None and ending.phase and not record.live():
            phase, reason, message = ending.phase, ending.reason, ending.message
        current = {**record.pod, "status": record.status or record.pod.get("status") or {}}
        status = pod_status(current, now=now, start_time=record.start_time, pod_ip=self._pod_ip,
                            init=[c.view() for c in record.init], app=[c.view() for c in record.app],
                            init_failed=record.init_failed, reason=reason or "", message=message or "",
                            phase=phase)
        with self._lock:
            changed = status != record.status
            previous, record.status = record.status, status
        if changed:
            try:
                self._sink.status_changed(record.uid)
            except Exception:
                with self._lock:
                    record.status = previous  # so that the retried sync announces it again
                raise
            if status["phase"] == "Running" and not record.start_observed and self._metrics is not None:
                record.start_observed = True
                created = record.pod["metadata"].get("creationTimestamp")
                if created and all(c.state is CS.RUNNING for c in record.app):
                    self._metrics.observe_pod_start(max(0.0, now - parse_time(created)))

    # --- helpers ----------------------------------------------------------------------------

    def _start_time(self, pod: dict[str, Any]) -> float:
        started = (pod.get("status") or {}).get("startTime")
        try:
            return parse_time(started) if started else self._clock()
        except ValueError:
            return self._clock()

    def _has_recovered(self, uid: str) -> bool:
        return any(key.startswith(uid + "/") for key in self._recovered)

    def _remove_workspace_of(self, container_dir: str) -> None:
        root = os.path.realpath(self._workspace.root)
        parts = os.path.relpath(os.path.realpath(container_dir or root), root).split(os.sep)
        if len(parts) >= 4 and parts[2] == "containers":
            try:
                self._workspace.remove_pod(parts[0], parts[1])
            except Exception:
                log.exception("could not remove the workspace %s/%s", parts[0], parts[1])


def _api_container_status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    status = pod.get("status") or {}
    for entry in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if entry.get("name") == name:
            return entry
    return {}


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"
