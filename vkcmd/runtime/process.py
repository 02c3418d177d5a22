"""The runtime: the one place that spawns, signals and reaps container processes.

``Runtime`` ties the pieces together - ``spawn`` (posix_spawn of the monitor), ``reaper`` (exits,
from pidfds), ``tracker`` (which processes are whose), ``usage`` and ``state`` (the records that let
a restarted vkcmd re-adopt its runs) - and owns the two threads: the reaper, and the scanner, which
scans the process table once per interval for all runs and runs the termination timers (SIGTERM,
grace, SIGSTOP everything, SIGKILL everything), memory limits and leftover cleanup - and, while
someone asks for usage, the full usage scan (as the kubelet's cAdvisor housekeeping does), so that
``usage()`` answers from the latest snapshot instead of scanning on the caller's thread.

It knows runs by opaque keys; nothing here knows of pods, Kubernetes or HTTP. The runs are in one
``RunTable`` (``process_run``), which the Runtime shares with the two parts it is composed of: the
``Scanner`` (``process_scan``) and the ``Recoverer`` (``process_recover``).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable

from vkcmd.logfmt import fields
from vkcmd.runtime import reaper as rp
from vkcmd.runtime.process_recover import Recovered, Recoverer, record_exit, report_of_exit_file
from vkcmd.runtime.process_run import Run, RunTable
from vkcmd.runtime.process_scan import Scanner, _killpg
from vkcmd.runtime.process_stat import boot_id, read_stat
from vkcmd.runtime.reaper import ExitReport, Reaper
from vkcmd.runtime.spawn import (LaunchError, LaunchSpec, RunInfo, Spawner, cloexec_inherited_fds,
                                 raise_nofile)
from vkcmd.runtime.stdins import StdinTable
from vkcmd.runtime.state import RunRecord, StateStore
from vkcmd.runtime.tracker import Tracker
from vkcmd.runtime.usage import NodeUsage, Usage, node_usage

__all__ = ["Runtime", "Recovered"]

log = logging.getLogger(__name__)


class Runtime:
    """Runs, watches and ends container processes. See docs/architecture.md (Runtime).

    ``on_exit(ExitReport)`` is called from the reaper thread, after the exit is on disk; it must
    return quickly (enqueue). ``on_done(key)`` callbacks of ``terminate`` are called from the
    scanner thread. ``clock`` gives the wall-clock times of reports; ``scan_interval`` is how often
    the process table is scanned (memory limits, escaped processes, leftovers); ``usage_interval``
    is how often the scanner measures every run's usage while ``usage()`` has been called in the last
    ``usage_linger`` seconds (not at all otherwise: an idle node stays cheap); ``shell`` runs the
    monitor; ``proc`` is the procfs root.

    Constructing has no side effects. ``start()`` creates the state dir, marks close-on-exec the
    fds vkcmd inherited, raises vkcmd's soft RLIMIT_NOFILE (runs get the original back) and starts
    the threads ``vkcmd-runtime-reaper`` and ``vkcmd-runtime-scan``. ``stop()`` joins them and leaves
    every run running (vkcmd may be restarting: ``recover()``); a Runtime is started once.
    """

    def __init__(self, state_dir: str | os.PathLike, *, on_exit: Callable[[ExitReport], None],
                 clock: Callable[[], float] = time.time, scan_interval: float = 1.0,
                 usage_interval: float = 2.0, usage_linger: float = 60.0,
                 shell: str = "/bin/sh", proc: str = "/proc"):
        self._store = StateStore(state_dir)
        self._on_exit = on_exit
        self._clock = clock
        self._shell = shell
        self._tracker = Tracker(proc)
        self._reaper = Reaper(self._leader_exited)
        self._spawner: Spawner | None = None
        self.stdins = StdinTable()  # containers' stdin write ends (stdin: true), for kubectl attach -i
        self._instance = self._boot_id = ""
        self._table = RunTable()
        self._scanner = Scanner(self._table, self._tracker, self._store, interval=scan_interval,
                                usage_interval=usage_interval, usage_linger=usage_linger)
        self._recoverer = Recoverer(self._table, self._store, self._scanner, self._reaper, clock)
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        assert self._thread is None, "Runtime.start() called twice"
        self._instance = self._store.create()
        self._boot_id = boot_id(self._tracker.proc)
        self._recoverer.instance, self._recoverer.boot_id = self._instance, self._boot_id
        cloexec_inherited_fds()
        self._spawner = Spawner(self._shell, child_nofile=raise_nofile(), stdins=self.stdins)
        self._reaper.start()
        self._thread = threading.Thread(target=self._scanner.run, name="vkcmd-runtime-scan", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Join the threads. Runs keep running; their state stays on disk for ``recover()``."""
        if self._thread is None:
            return
        with self._table.cond:
            self._table.stopping = True
            self._table.cond.notify_all()
        self._reaper.stop(timeout)
        self._thread.join(timeout)
        self._scanner.close()
        self._tracker.forget_all()
        self._thread = None

    def recover(self) -> list[Recovered]:
        """Re-adopt the runs recorded in the state dir (after a restart of vkcmd; call after
        ``start()``). One ``Recovered`` per key (its newest run), sorted by key: a run whose leader
        still lives with the recorded start time (and boot) is adopted and its exit will come
        through ``on_exit``; any other ended while vkcmd was down and carries the exit its monitor
        recorded (``ContainerStatusUnknown``, 137, when none was). What ended runs left behind, and
        runs of this state dir that were never recorded, are killed. Idempotent: a second call
        adopts nothing twice and returns the same runs (ended ones stay until ``forget``)."""
        self._require_started()
        return self._recoverer.recover()

    # -- runs ----------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> RunInfo:
        """Start a run of ``spec.key``. Raises LaunchError when it cannot be started, or when the
        key has a run whose leader still lives. A key whose last run ended gets a new run."""
        self._require_started()
        self._spawner.check(spec)
        run_id = f"{self._instance}-{secrets.token_hex(6)}"
        record = RunRecord(spec.key, run_id, os.path.abspath(spec.container_dir), self._clock(),
                           spec.memory_limit_bytes, boot_id=self._boot_id)
        run = Run(spec.key, run_id, record, spec.memory_limit_bytes)
        table = self._table
        with table.lock:
            previous = table.by_key.get(spec.key)
            if previous is not None and (previous.leader_alive or previous.starting):
                raise LaunchError(f"{spec.key}: already running (run {previous.run_id})")
            table.by_key[spec.key] = run
            table.by_id[run_id] = run
            table.changed(run)
        try:
            pid = self._spawner.spawn(spec, run_id, str(self._store.exit_path(run_id)))
        except Exception:
            self._drop_failed(run, previous)
            raise
        # Should vkcmd die before the record below is written, recover() kills this run: its run id
        # carries our instance id, and nobody was told that it started.
        self._tracker.claim(pid)          # a scan may have judged it before its exec: judge it again
        try:
            stat = read_stat(pid, self._tracker.proc)
            pidfd = os.pidfd_open(pid)                   # our child: its pid stays ours until reaped
            record.pid, record.leader_start = pid, stat.start
            info = RunInfo(spec.key, run_id, pid, pid, stat.start, record.started_at, record.container_dir)
            Spawner.write_pgid(spec.container_dir, pid)
            self._store.write(record)
        except Exception as err:
            _killpg(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)                        # our child, just killed: reap it now
            except ChildProcessError:
                pass
            self._drop_failed(run, previous)
            raise LaunchError(f"{spec.key}: started but could not be watched: {err}") from err
        with table.lock:
            run.info, run.pid, run.child = info, pid, True
            run.starting, run.leader_alive = False, True
            table.by_pid[pid] = run
            table.changed(run)
            if previous is not None:
                previous.current = False
                table.changed(previous)             # superseded: dropped once nothing is left of it
            if run.term_pending or run.kill_deadline is not None:
                table.cond.notify_all()
        self._reaper.watch(pid, pidfd)
        log.debug("run started", extra=fields(key=spec.key, run=run_id, pid=pid))
        return info

    def terminate(self, key: str, grace_seconds: float, on_done: Callable[[str], None] | None = None) -> None:
        """End ``key``'s run without blocking: SIGTERM to every process of it (its group and any
        that left it), then after ``grace_seconds`` SIGSTOP whatever is left (re-scanning until no
        new process appears) and SIGKILL it all. ``on_done(key)`` is called once nothing of the run
        is left (at once for an unknown key). A second call with a shorter grace shortens the wait;
        grace 0 stops and kills at once. The exit is reported through ``on_exit`` as usual."""
        now = time.monotonic()
        table = self._table
        with table.lock:
            run = table.by_key.get(key)
            if run is None:
                if on_done is not None:
                    table.orphan_done.append((key, on_done))
            else:
                if on_done is not None:
                    run.done_cbs.append(on_done)
                    table.changed(run)
                if run.leader_alive or run.starting:
                    table.set_deadline(run, now + max(grace_seconds, 0.0), term=grace_seconds > 0)
            table.wake()

    def kill_now(self, key: str) -> None:
        """SIGSTOP and SIGKILL everything of ``key``'s run now (terminate with grace 0)."""
        self.terminate(key, 0)

    def forget(self, key: str) -> None:
        """Drop ``key``: its state files go once nothing of its run is left. A run still running is
        killed first, and its exit is not reported."""
        table = self._table
        with table.lock:
            run = table.by_key.pop(key, None)
            if run is None:
                return
            run.current = False
            table.changed(run)
            if run.gone and not (run.leader_alive or run.starting or run.done_cbs):
                del table.by_id[run.run_id]              # nothing left of it: no scan needed
            else:
                if run.leader_alive or run.starting:
                    run.silent = True
                    table.set_deadline(run, time.monotonic(), term=False)
                table.wake()
                return
        self._store.remove(run.run_id)

    def runs(self) -> dict[str, RunInfo]:
        """The runs whose leader lives, by key."""
        with self._table.lock:
            return {k: r.info for k, r in self._table.by_key.items() if r.leader_alive and r.info}

    def processes(self, key: str) -> list[int]:
        """The pids of every process of ``key``'s run now (a fresh scan), sorted."""
        with self._table.lock:
            run = self._table.by_key.get(key)
        if run is None:
            return []
        return self._scanner.scan(stat_runs={run.run_id}).pids(run.run_id)

    def usage(self) -> dict[str, Usage]:
        """Usage of every running run, by key, from the scanner's latest snapshot (each ``Usage``
        carries the wall time of its scan); a scan on the caller's thread only when there is no
        recent one. Keeps the scanner measuring for the next ``usage_linger`` seconds."""
        fresh = self._scanner.wanted_usage()
        return fresh if fresh is not None else self.refresh()

    def refresh(self) -> dict[str, Usage]:
        """Scan now and return every running run's usage."""
        return self._scanner.measure(self._scanner.scan(full=True))

    @property
    def scans(self) -> int:
        """Scans of the process table (of any kind), since start."""
        return self._tracker.scans

    @property
    def full_scans(self) -> int:
        """Scans that measured every run (in the background or by ``refresh``), since start."""
        return self._tracker.full_scans

    def node_usage(self) -> NodeUsage:
        return node_usage()
    # -- exits (reaper thread) -----------------------------------------------------------------

    def _leader_exited(self, pid: int) -> None:
        table = self._table
        with table.lock:
            run = table.by_pid.pop(pid, None)
        if run is None:
            log.warning("exit of an unknown leader", extra=fields(pid=pid))
            return
        # Everything left in the group dies with the leader, as in a container whose init ended.
        # The leader is a zombie or just reaped by init: its pid (= pgid) is still not reusable.
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        status, cpu = rp.reap(pid) if run.child else (None, 0.0)
        recorded = self._store.read_exit(run.run_id)
        if run.kill_reason == rp.OOM_KILLED:
            report = ExitReport(run.key, run.run_id, 137, signal.SIGKILL.value, self._clock(), rp.OOM_KILLED,
                                run.record.started_at, f"memory use above the limit of {run.memory_limit} bytes")
        elif recorded is not None:
            # The monitor's exit file already holds all of it (recover() reads it the same way):
            # nothing more to write before telling anyone.
            report = report_of_exit_file(run, *recorded)
        elif status is not None:
            code = rp.exit_code_of(status)
            message = (f"the run's monitor was killed by signal {os.WTERMSIG(status)}"
                       if os.WIFSIGNALED(status) else "the run's monitor recorded no exit status")
            report = ExitReport(run.key, run.run_id, code, rp.signal_of(code), self._clock(),
                                rp.reason_of(code), run.record.started_at, message)
        else:
            report = ExitReport(run.key, run.run_id, 137, None, self._clock(), rp.STATUS_UNKNOWN,
                                run.record.started_at, "the run's exit status was not recorded")
        if recorded is not None and run.kill_reason is None:
            run.exit = report
        else:
            record_exit(self._store, run, report)        # on disk before anyone hears of it
        code, reason = report.exit_code, report.reason
        with table.lock:
            run.leader_alive = False
            run.term_pending, run.kill_deadline = False, None     # nothing left to time
            table.changed(run)
            if cpu:
                run.cpu.add_final(cpu)
            if run.done_cbs or not run.current:
                table.wake()
        log.debug("run exited", extra=fields(key=run.key, run=run.run_id, exit_code=code, reason=reason))
        if not run.silent:
            try:
                self._on_exit(report)
            except Exception:
                log.exception("on_exit failed for %s", run.key)
    def _drop_failed(self, run: Run, previous: Run | None) -> None:
        self._table.forget_failed(run, previous)
        self._store.remove(run.run_id)

    def _require_started(self) -> None:
        if self._thread is None:
            raise RuntimeError("Runtime.start() first")
