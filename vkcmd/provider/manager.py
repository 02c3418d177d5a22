"""The provider: runs this node's pods on the process runtime.

Level-triggered, like a kubelet's pod workers: every input (a pod from the
API, a process exit, an object that appeared, a timer) only marks the pod's
key dirty; a small pool of workers then *syncs* the pod — applies exits,
decides restarts and back-off, stages and launches what should run, ends what
should end — and publishes the pod's status. No thread per pod: back-offs and
deadlines are delayed adds on one timer. The records, and the input other
threads hand them, are kept by ``podtable.PodTable``; the manager holds no lock.

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

from vkcmd.machines import POD_RUNNING, ContainerEvent as CE, ContainerState as CS, PodEvent as PE, PodState as PS
from vkcmd.pods import Resolver, Workspace
from vkcmd.pods.paths import remove_path
from vkcmd.pods.podstatus import pod_status
from vkcmd.provider import decide
from vkcmd.provider.hooks import HOOKS, Hooks
from vkcmd.provider.launch import Launcher, LogWatcher
from vkcmd.provider.podtable import PodTable, StatsPod
from vkcmd.provider.probing import ProbeItem, Prober
from vkcmd.provider.records import ContainerRecord, PodRecord, grace_period, new_record
from vkcmd.provider.tokenfiles import renew_running
from vkcmd.runtime import ExitReport, Runtime
from vkcmd.runtime.probes import ProbeRunner
from vkcmd.timefmt import parse_time
from vkcmd.workqueue import WorkQueue, run_workers

log = logging.getLogger("vkcmd.provider")

NORMAL, WARNING = "Normal", "Warning"
SYNC_RETRY = 10.0  # seconds before a pod whose sync raised is synced again
RECLAIM_PATIENCE = 10.0  # seconds a stop waits for the removal of detached pod directories


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


class PodManager:
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
        self._logs = logs
        self._clock = clock
        self._observers = list(observers)
        self._workers = workers
        self._metrics = metrics
        self._table = PodTable()  # the records and their indexes; the one lock
        self._queue = WorkQueue("pods")
        self._reclaim = WorkQueue("pod-reclaim")  # paths of detached pod directories to remove
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._launcher = Launcher(runtime, workspace, resolver, sink, home=home, base_env=base_env,
                                  backoff=(backoff_initial, backoff_max), logs=logs, metrics=metrics, clock=clock,
                                  wake=self._queue.add_after, stopped=self._stopped)
        self._prober = Prober(probes, post=self._post_probe, wake=self._queue.add_after, event=sink.event,
                              terminate=self._kill_for_probe, clock=clock,
                              pod_ip=pod_ip)
        self._hooks = Hooks(probes, post=self._post_probe, wake=self._queue.add_after, pod_ip=pod_ip)

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Re-adopt runs left by an earlier vkcmd, then start the workers."""
        found = self._table.set_recovered(self._runtime.recover())
        if found:
            log.info("found %d run(s) from before the restart", found)
        self._threads = run_workers(self._queue, self._sync_or_retry, self._workers)
        for leftover in self._workspace.removed():  # detached before a stop, not yet removed
            self._reclaim.add(leftover)
        self._threads += run_workers(self._reclaim, self._remove_detached, 1)

    def stop(self) -> None:
        """Stop the workers; processes keep running (vkcmd may be restarting)."""
        self._stopped.set()
        self._queue.shutdown()
        deadline = time.monotonic() + RECLAIM_PATIENCE  # the detached directories go before vkcmd does
        while len(self._reclaim) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._reclaim.shutdown()  # what is left is removed at the next start
        for thread in self._threads:
            thread.join(5)

    # --- input ----------------------------------------------------------------------------

    def upsert(self, pod: dict[str, Any]) -> None:
        """A pod bound to this node was added or changed in the API."""
        if self._table.admit(pod, lambda: new_record(pod, self._start_time(pod), self._observers)):
            self._queue.add(pod["metadata"]["uid"])

    def remove(self, pod: dict[str, Any]) -> None:
        """The pod is gone from the API: end its processes and clean up, writing nothing there."""
        if self._table.mark_removed(pod["metadata"]["uid"]):
            self._queue.add(pod["metadata"]["uid"])

    def resync(self, uids: Iterable[str]) -> None:
        """After a full list of the API: runs of pods that no longer exist are killed and cleaned."""
        for orphan in self._table.resync(set(uids)):
            log.info("run %s belongs to a pod deleted while vkcmd was down; removing it", orphan.key)
            self._runtime.forget(orphan.key)
            self._remove_workspace_of(orphan.info.container_dir if orphan.info else "")

    def object_changed(self, kind: str, namespace: str, name: str) -> None:
        """A ConfigMap, Secret or token changed: retry the pods of that namespace waiting on config; a
        renewed token also goes into the running containers of its pod (``name``)."""
        for uid in self._table.object_changed(kind, namespace, name):
            self._queue.add(uid)

    def on_exit(self, report: ExitReport) -> None:
        """From the runtime's reaper: a run ended (never blocks)."""
        uid = report.key.split("/", 1)[0]
        if self._table.add_input(uid, exit=report):
            self._queue.add(uid)

    def _post_probe(self, uid: str, item: ProbeItem) -> None:
        """From a probe thread: a probe finished (never blocks)."""
        if self._table.add_input(uid, probe=item):
            self._queue.add(uid)

    # --- output ---------------------------------------------------------------------------

    def status(self, uid: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(pod metadata, published status) of ``uid``, or None when unknown or removed."""
        return self._table.status(uid)

    def pods(self) -> list[dict[str, Any]]:
        """Every pod this node runs, with its current status (for the kubelet API's /pods)."""
        return self._table.pods()

    def stats_pods(self) -> tuple[StatsPod, ...]:
        """What the stats need of every pod (the same tuple while it did not change; see ``PodTable``)."""
        return self._table.stats_pods()

    def container_dir(self, namespace: str, name: str, container: str) -> tuple[str, Callable[[], bool]] | None:
        """Where a container's output is, and a callable telling whether it still runs."""
        found = self._table.container(namespace, name, container)
        if found is None:
            return None
        directory = found.container_dir or self._workspace.container_dir(namespace, name, container)
        return directory, lambda: found.state is CS.RUNNING

    def run_key(self, namespace: str, name: str, container: str) -> str | None:
        found = self._table.container(namespace, name, container)
        return found.key if found else None

    # --- drain (from the node's drain thread: input only, applied by the pod's worker) ------

    def max_grace_period(self) -> float:
        return self._table.max_grace_period()

    def end_all(self, reason: str, message: str, fast: bool) -> None:
        """Terminate every pod (grace unless ``fast``); each ends Failed with ``reason``."""
        for uid in self._table.mark_drain(reason, message, fast):
            self._queue.add(uid)

    def hurry(self) -> None:
        """Shorten every grace period in progress (or asked for) to nothing."""
        for uid in self._table.mark_hurry():
            self._queue.add(uid)

    def all_stopped(self) -> bool:
        """True when no pod has a live process, an ending in progress or a drain not yet applied."""
        return self._table.all_stopped()

    # --- the sync ---------------------------------------------------------------------------

    def _sync_or_retry(self, uid: str) -> None:
        """A sync that fails unexpectedly is reported on the pod and retried; the node carries on."""
        try:
            self._sync(uid)
        except Exception as error:
            log.exception("syncing pod %s failed; retrying in %.0fs", uid, SYNC_RETRY)
            record = self._table.in_api(uid)
            if record is not None:
                self._sink.event(record.pod, WARNING, "FailedSync", f"error syncing pod: {error}")
            self._queue.add_after(uid, SYNC_RETRY)

    def _sync(self, uid: str) -> None:
        taken = self._table.take_input(uid)
        if taken is None:
            return
        record = taken.record
        self._launcher.adopt(record, self._table.take_recovered)
        now = self._clock()
        for report in taken.exits:
            self._launcher.apply_exit(record, report, now)
        for item in taken.probe_results + self._hooks.slept(record, now):
            if item[2] in HOOKS:
                self._apply_hook(record, item, now)
            else:
                self._prober.apply(record, item)
        self._check_ending(record, taken.pod, taken.removed, taken.drain, taken.hurry, now)
        if record.state is PS.ENDING:
            self._end(record, now)
        elif record.state in POD_RUNNING:
            self._advance(record, now)
            self._prober.run_due(record, now)
            if taken.tokens_renewed:
                renew_running(record, self._resolver)
        self._publish(record, now)
        if self._table.note_waiting(record, taken.changes):
            self._queue.add(uid)  # an object changed during the sync

    def _check_ending(self, record: PodRecord, pod: dict[str, Any], removed: bool,
                      drain: tuple[str, str, bool] | None, hurry: bool, now: float) -> None:
        """Start ending the pod when it is deleted, removed, past its deadline, or drained."""
        check = decide.check_ending(pod, removed=removed, current=record.ending, active=record.state in POD_RUNNING,
                                    start_time=record.start_time, now=now)
        ending = check.ending
        if drain is not None and (record.state in POD_RUNNING or record.state is PS.ENDING):
            ending = decide.drain_ending(pod, ending, *drain) or ending
        if hurry and ending is not None and record.state is not PS.ENDED:
            ending = decide.hurried(ending)
        if check.deadline_hit and ending is check.ending:
            self._sink.event(pod, NORMAL, decide.DEADLINE_REASON, decide.DEADLINE_MESSAGE)
        if check.deadline_in is not None:
            self._queue.add_after(record.uid, check.deadline_in)
        if ending is record.ending:
            return
        record.ending = ending
        if record.state is not PS.ENDING:
            record.machine.fire(PE.END, reason=ending.reason or ("removed" if removed else "deleted"))

    def _end(self, record: PodRecord, now: float) -> None:
        ending = record.ending
        plan = decide.end_plan(list(record.containers()), ending)
        for container in plan.abandon:
            container.machine.fire(CE.ABANDON, reason=ending.reason or "pod deleted")
        for container in record.containers():
            if container.state is CS.EXITED:
                container.restarting = False
        for container in plan.terminate:
            ending.signalled.add(container.key)
            if ending.grace > 0:
                self._sink.event(record.pod, NORMAL, "Killing", f"Stopping container {container.name}",
                                 container.name)
                if self._hooks.start(record, container, "preStop", ending.grace, now):
                    ending.prestop[container.key] = now  # SIGTERM once it is done, with the grace left
                    continue
            self._terminate(record, container, ending.grace)
        if not plan.settled:
            return
        if not ending.delete:
            record.machine.fire(PE.STOPPED, reason=ending.reason)
            return
        self._publish(record, now)  # the terminated statuses, written before the pod goes
        removed = self._table.is_removed(record)
        record.machine.fire(PE.VANISH if removed else PE.CLEAN, reason="no process left")
        for container in record.containers():
            self._runtime.forget(container.key)
            if self._logs and container.container_dir:
                self._logs.unwatch(container.container_dir)
        try:  # out of the workspace in one rename; its files are removed off the pod's path
            detached = self._detach(record)
            if detached is not None:
                self._reclaim.add(detached)
        except Exception:
            log.exception("could not remove the workspace of pod %s", record.key)
        if hasattr(self._resolver, "forget_pod"):
            self._resolver.forget_pod(record.uid)
        final = self._table.drop(record, cleaned=not removed)
        if not removed:
            self._sink.pod_gone(record.pod, final)

    def _terminate(self, record: PodRecord, container: ContainerRecord, grace: float) -> None:
        self._runtime.terminate(container.key, grace, on_done=lambda _key, uid=record.uid: self._queue.add(uid))

    def _apply_hook(self, record: PodRecord, item: tuple, now: float) -> None:
        """A hook finished: a failed postStart kills its container; a preStop lets the SIGTERM go."""
        key, run_id, which, result = item
        container = record.by_key(key)
        if container is None or container.run_id != run_id:
            return
        label = "PostStart" if which == "postStart" else "PreStop"
        if not result.ok:
            self._sink.event(record.pod, WARNING, f"Failed{label}Hook",
                             f"{label}Hook failed for container {container.name}: {result.output.strip()}",
                             container.name)
        if which == "postStart":
            container.post_start_pending = False
            if not result.ok and container.state is CS.RUNNING and record.ending is None:
                self._terminate(record, container, grace_period(record.pod))
            return
        ending = record.ending
        if ending is not None and key in ending.prestop:
            began = ending.prestop.pop(key)
            self._terminate(record, container, max(0.0, ending.grace - (now - began)))
        elif container.prestop is not None:
            (began, grace), container.prestop = container.prestop, None
            self._terminate(record, container, max(0.0, grace - (now - began)))

    def _kill_for_probe(self, record: PodRecord, container: ContainerRecord, grace: float) -> None:
        """A liveness or startup probe failed for good: preStop first (if any), then the SIGTERM."""
        now = self._clock()
        if container.prestop is None and grace > 0 and self._hooks.start(record, container, "preStop", grace, now):
            container.prestop = (now, grace)
            return
        self._terminate(record, container, grace)

    def _advance(self, record: PodRecord, now: float) -> None:
        """Start whatever should run now: init containers in order, then the app containers."""
        policy = decide.restart_policy(record.pod)
        plan = decide.start_plan(record.init, record.app, policy, record.init_failed, now)
        for container in plan.start:
            self._launcher.start(record, container, now)
            if container.state is CS.RUNNING:
                container.post_start_pending = self._hooks.start(record, container, "postStart",
                                                                 grace_period(record.pod), now)
        if plan.wake_in is not None:
            self._queue.add_after(record.uid, plan.wake_in)
        if not (plan.complete or (plan.start and decide.app_done(record.app, policy))):
            return
        if record.live():  # the main containers are done: the sidecars are stopped, then the pod ends
            record.ending = decide.sidecars_ending(record.pod)
            record.machine.fire(PE.END, reason="main containers done: stopping the sidecars")
            self._end(record, now)
            return
        record.machine.fire(PE.COMPLETE, reason="init container failed" if record.init_failed
                            else f"every container done (restartPolicy {policy})")

    def _publish(self, record: PodRecord, now: float) -> None:
        if self._table.is_removed(record):
            return
        ending = record.ending
        phase = reason = message = None
        if ending is not None and ending.phase and not record.live():
            phase, reason, message = ending.phase, ending.reason, ending.message
        current = {**record.pod, "status": record.status or record.pod.get("status") or {}}
        status = pod_status(current, now=now, start_time=record.start_time, pod_ip=self._pod_ip,
                            init=[c.view() for c in record.init], app=[c.view() for c in record.app],
                            init_failed=record.init_failed, reason=reason or "", message=message or "",
                            phase=phase, sandbox_ready=record.state in POD_RUNNING or bool(record.live()),
                            disruption=(decide.DISRUPTION_REASON, ending.message or ending.reason)
                            if ending is not None and ending.disruption else None)
        previous = self._table.swap_status(record, status)
        if status != previous:
            try:
                self._sink.status_changed(record.uid)
            except Exception:
                self._table.swap_status(record, previous)  # so that the retried sync announces it again
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

    def _detach(self, record: PodRecord) -> str | None:
        """Move the pod's directory out of the workspace; when that cannot be done (the trash directory
        refused: e.g. a link planted in its place), remove it where it is, on the pod's path."""
        try:
            return self._workspace.detach_pod(record.namespace, record.name)
        except OSError as error:
            log.warning("could not move the workspace of pod %s aside (%s); removing it in place", record.key, error)
            self._workspace.remove_pod(record.namespace, record.name)
            return None

    def _remove_detached(self, path: str) -> None:
        """(the pod-reclaim thread) Remove a pod directory ``detach_pod`` moved out of the workspace."""
        try:
            remove_path(path, missing_ok=True)
        except Exception:
            log.exception("could not remove the detached workspace %s", path)

    def _remove_workspace_of(self, container_dir: str) -> None:
        root = os.path.realpath(self._workspace.root)
        parts = os.path.relpath(os.path.realpath(container_dir or root), root).split(os.sep)
        if len(parts) >= 4 and parts[2] == "containers":
            try:
                self._workspace.remove_pod(parts[0], parts[1])
            except Exception:
                log.exception("could not remove the workspace %s/%s", parts[0], parts[1])
