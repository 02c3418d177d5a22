"""The runtime: the one place that spawns, signals and reaps container processes.

``Runtime`` ties the pieces together - ``spawn`` (posix_spawn of the monitor), ``reaper`` (exits,
from pidfds), ``tracker`` (which processes are whose), ``usage`` and ``state`` (the records that let
a restarted vkcmd re-adopt its runs) - and owns the two threads: the reaper, and the scanner, which
scans the process table once per interval for all runs and runs the termination timers (SIGTERM,
grace, SIGSTOP everything, SIGKILL everything), memory limits and leftover cleanup.

It knows runs by opaque keys; nothing here knows of pods, Kubernetes or HTTP.
"""

from __future__ import annotations

import heapq
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vkcmd.logs import fields
from vkcmd.runtime import reaper as rp
from vkcmd.runtime.process_stat import boot_id, read_stat
from vkcmd.runtime.reaper import ExitReport, Reaper
from vkcmd.runtime.spawn import (LaunchError, LaunchSpec, RunInfo, Spawner, cloexec_inherited_fds,
                                 raise_nofile)
from vkcmd.runtime.state import RunRecord, StateStore
from vkcmd.runtime.tracker import Snapshot, Tracker
from vkcmd.runtime.usage import CpuAccount, NodeUsage, Usage, memory_of, node_usage

log = logging.getLogger(__name__)

#: Rounds of SIGSTOP + re-scan before the SIGKILL, at most (each round stops what the last one found).
_MAX_STOP_ROUNDS = 20
#: While someone waits for a run to be gone, re-scan this often (seconds) instead of each interval.
_DONE_RECHECK = 0.05


@dataclass(frozen=True)
class Recovered:
    """A run found in the state dir by ``recover()``: still running (``exit`` is None; it has been
    re-adopted and its exit will come through ``on_exit``) or ended while vkcmd was down (``exit``
    says how; not reported through ``on_exit``)."""
    key: str
    info: RunInfo
    exit: ExitReport | None

    @property
    def running(self) -> bool:
        return self.exit is None


@dataclass(eq=False)
class _Run:
    key: str
    run_id: str
    record: RunRecord
    memory_limit: int | None = None
    info: RunInfo | None = None
    pid: int = 0
    child: bool = False             # our child: reaped here with wait4
    starting: bool = True
    leader_alive: bool = False
    exit: ExitReport | None = None
    current: bool = True            # the key's current run (not superseded, not forgotten)
    silent: bool = False            # forgotten while running: no exit report
    term_pending: bool = False      # SIGTERM still to send
    termed: bool = False
    kill_deadline: float | None = None   # monotonic time of the SIGSTOP/SIGKILL sweep
    kill_reason: str | None = None
    done_cbs: list = field(default_factory=list)
    cpu: CpuAccount = field(default_factory=CpuAccount)
    ever_empty: bool = False


class Runtime:
    """Runs, watches and ends container processes. See docs/architecture.md (Runtime).

    ``on_exit(ExitReport)`` is called from the reaper thread, after the exit is on disk; it must
    return quickly (enqueue). ``on_done(key)`` callbacks of ``terminate`` are called from the
    scanner thread. Constructing has no side effects; ``start()`` creates the state dir and threads;
    ``stop()`` joins them and leaves every run running (vkcmd may be restarting: ``recover()``).
    """

    def __init__(self, state_dir: str | os.PathLike, *, on_exit: Callable[[ExitReport], None],
                 clock: Callable[[], float] = time.time, scan_interval: float = 1.0,
                 shell: str = "/bin/sh", proc: str = "/proc"):
        self._store = StateStore(state_dir)
        self._on_exit = on_exit
        self._clock = clock
        self._interval = scan_interval
        self._shell = shell
        self._tracker = Tracker(proc)
        self._reaper = Reaper(self._leader_exited)
        self._spawner: Spawner | None = None
        self._boot_id = ""
        self._instance = ""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._by_key: dict[str, _Run] = {}
        self._by_id: dict[str, _Run] = {}
        self._by_pid: dict[int, _Run] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._orphan_done: list[tuple[str, Callable[[str], None]]] = []
        self._sweep = False
        self._next_scan = 0.0
        self._usage: dict[str, Usage] = {}
        self._usage_at = float("-inf")
        self._scanner: threading.Thread | None = None
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        assert self._scanner is None, "Runtime.start() called twice"
        self._instance = self._store.create()
        self._boot_id = boot_id(self._tracker.proc)
        cloexec_inherited_fds()
        self._spawner = Spawner(self._shell, child_nofile=raise_nofile())
        self._reaper.start()
        self._scanner = threading.Thread(target=self._scan_loop, name="vkcmd-runtime-scan", daemon=True)
        self._scanner.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Join the threads. Runs keep running; their state stays on disk for ``recover()``."""
        if self._scanner is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._reaper.stop(timeout)
        self._scanner.join(timeout)
        self._tracker.forget_all()
        self._scanner = None

    # -- runs ----------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> RunInfo:
        """Start a run of ``spec.key``. Raises LaunchError when it cannot be started, or when the
        key has a run whose leader still lives. A key whose last run ended gets a new run."""
        self._require_started()
        self._spawner.check(spec)
        run_id = f"{self._instance}-{secrets.token_hex(6)}"
        record = RunRecord(spec.key, run_id, os.path.abspath(spec.container_dir), self._clock(),
                           spec.memory_limit_bytes, boot_id=self._boot_id)
        run = _Run(spec.key, run_id, record, spec.memory_limit_bytes)
        with self._lock:
            previous = self._by_key.get(spec.key)
            if previous is not None and (previous.leader_alive or previous.starting):
                raise LaunchError(f"{spec.key}: already running (run {previous.run_id})")
            self._by_key[spec.key] = run
            self._by_id[run_id] = run
        try:
            pid = self._spawner.spawn(spec, run_id, str(self._store.exit_path(run_id)))
        except Exception:
            self._drop_failed(run, previous)
            raise
        # Should vkcmd die before the record below is written, recover() kills this run: its run id
        # carries our instance id, and nobody was told that it started.
        try:
            stat = read_stat(pid, self._tracker.proc)
            pidfd = os.pidfd_open(pid)                   # our child: its pid stays ours until reaped
            record.pid, record.leader_start = pid, stat.start
            info = RunInfo(spec.key, run_id, pid, pid, stat.start, record.started_at, record.container_dir)
            Spawner.write_pgid(spec.container_dir, pid)
            self._store.write(record)
        except Exception as err:
            _killpg(pid, signal.SIGKILL)
            rp.reap(pid)
            self._drop_failed(run, previous)
            raise LaunchError(f"{spec.key}: started but could not be watched: {err}") from err
        with self._cond:
            run.info, run.pid, run.child = info, pid, True
            run.starting, run.leader_alive = False, True
            self._by_pid[pid] = run
            if previous is not None:
                previous.current = False
            if run.term_pending or run.kill_deadline is not None:
                self._cond.notify_all()
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
        with self._cond:
            run = self._by_key.get(key)
            if run is None:
                if on_done is not None:
                    self._orphan_done.append((key, on_done))
            else:
                if on_done is not None:
                    run.done_cbs.append(on_done)
                if run.leader_alive or run.starting:
                    self._set_deadline(run, now + max(grace_seconds, 0.0), term=grace_seconds > 0)
            self._sweep = True
            self._cond.notify_all()

    def kill_now(self, key: str) -> None:
        """SIGSTOP and SIGKILL everything of ``key``'s run now (terminate with grace 0)."""
        self.terminate(key, 0)

    def forget(self, key: str) -> None:
        """Drop ``key``: its state files go once nothing of its run is left. A run still running is
        killed first, and its exit is not reported."""
        with self._cond:
            run = self._by_key.pop(key, None)
            if run is None:
                return
            run.current = False
            if run.leader_alive or run.starting:
                run.silent = True
                self._set_deadline(run, time.monotonic(), term=False)
            self._sweep = True
            self._cond.notify_all()

    def runs(self) -> dict[str, RunInfo]:
        """The runs whose leader lives, by key."""
        with self._lock:
            return {k: r.info for k, r in self._by_key.items() if r.leader_alive and r.info}

    def processes(self, key: str) -> list[int]:
        """The pids of every process of ``key``'s run now (a fresh scan), sorted."""
        with self._lock:
            run = self._by_key.get(key)
        if run is None:
            return []
        return self._scan(stat_runs={run.run_id}).pids(run.run_id)

    def usage(self) -> dict[str, Usage]:
        """Usage of every running run, by key, at most one scan interval old."""
        with self._lock:
            fresh = time.monotonic() - self._usage_at < self._interval
            if fresh:
                return dict(self._usage)
        return self.refresh()

    def refresh(self) -> dict[str, Usage]:
        """Scan now and return every running run's usage."""
        snap = self._scan(full=True)
        with self._lock:
            usage = {}
            for run in self._by_key.values():
                members = snap.members.get(run.run_id)
                if not run.leader_alive or not members or run.info is None:
                    continue
                rss, ws = memory_of(members)
                usage[run.key] = Usage(run.cpu.value, rss, ws, len(members), run.info.started_at, snap.wall)
            self._usage, self._usage_at = usage, snap.taken_at
            return dict(usage)

    def node_usage(self) -> NodeUsage:
        return node_usage()

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> list[Recovered]:
        """Re-adopt the runs recorded in the state dir (after a restart of vkcmd). A run whose
        leader still lives with the recorded start time (and boot) is adopted; any other ended while
        vkcmd was down and is reported with the exit its monitor recorded. Idempotent."""
        self._require_started()
        newest: dict[str, RunRecord] = {}
        stale: list[RunRecord] = []
        for record in self._store.load_all():            # oldest first
            if record.key in newest:
                stale.append(newest[record.key])
            newest[record.key] = record
        results = []
        for record in newest.values():
            with self._lock:
                run = self._by_id.get(record.run_id)
                other = self._by_key.get(record.key)
            if run is None and other is not None:        # the key has a newer run of ours
                stale.append(record)
                continue
            if run is None:
                run = self._adopt(record)
            results.append(Recovered(run.key, run.info, run.exit))
        for record in stale:
            with self._lock:
                known = record.run_id in self._by_id
            if not known:
                self._adopt(record, current=False)
        self._kill_unrecorded()
        with self._cond:
            self._sweep = True
            self._cond.notify_all()
        return sorted(results, key=lambda r: r.key)

    def _kill_unrecorded(self) -> None:
        """Runs of this state dir with no record (vkcmd died between their spawn and their record):
        nobody knows they started, so they are killed, like leftovers of an ended run."""
        self._scan()
        prefix = self._instance + "-"
        with self._lock:
            for run_id in self._tracker.markers(prefix) - self._by_id.keys():
                record = RunRecord("", run_id, "", 0.0)
                self._by_id[run_id] = _Run("", run_id, record, starting=False, current=False, silent=True)
                log.warning("killing a run that was never recorded", extra=fields(run=run_id))

    def _adopt(self, record: RunRecord, current: bool = True) -> _Run:
        run = _Run(record.key, record.run_id, record, record.memory_limit_bytes, starting=False,
                   current=current, silent=not current)
        pidfd, child = None, False
        if record.exit_code is None and record.pid is not None:
            pidfd, child = self._verify(record)
        run.pid, run.child = record.pid or 0, child
        run.info = RunInfo(record.key, record.run_id, run.pid, run.pid, record.leader_start or 0,
                           record.started_at, record.container_dir)
        if pidfd is None and record.exit_code is None:
            self._record_exit(run, self._ended_while_down(run))
        with self._cond:
            if current:
                self._by_key[run.key] = run
            self._by_id[run.run_id] = run
            if pidfd is not None:
                run.leader_alive = True
                self._by_pid[run.pid] = run
                if not current:
                    self._set_deadline(run, time.monotonic(), term=False)
            elif record.exit_code is not None:
                run.exit = run.exit or self._report_of(record)
        if pidfd is not None:
            self._reaper.watch(run.pid, pidfd)
        log.info("run recovered", extra=fields(key=run.key, run=run.run_id, pid=run.pid,
                                               running=pidfd is not None,
                                               exit_code=None if run.exit is None else run.exit.exit_code))
        return run

    def _verify(self, record: RunRecord) -> tuple[int | None, bool]:
        """(pidfd, is our child) when the recorded leader still runs - same boot, same pid, same
        start time, not a zombie - else (None, False); an ended leader that is our own zombie
        (a Runtime restarted inside one process) is reaped."""
        if record.boot_id != self._boot_id:
            return None, False
        try:
            pidfd = os.pidfd_open(record.pid)
        except (ProcessLookupError, OSError):
            return None, False
        stat = read_stat(record.pid, self._tracker.proc)
        if stat is None or stat.start != record.leader_start:
            os.close(pidfd)
            return None, False
        child = stat.ppid == os.getpid()
        if stat.state == "Z":
            os.close(pidfd)
            if child:
                status, _ = rp.reap(record.pid)
                if status is not None:
                    record.message = f"leader wait status {status}"
            return None, False
        return pidfd, child

    def _ended_while_down(self, run: _Run) -> ExitReport:
        record = run.record
        if record.pid is None:
            return ExitReport(run.key, run.run_id, 128, None, self._clock(), rp.START_ERROR,
                              record.started_at, "the run's record names no process")
        recorded = self._store.read_exit(run.run_id)
        if recorded is not None:
            return self._report_of_exit_file(run, *recorded)
        return ExitReport(run.key, run.run_id, 137, None, self._clock(), rp.STATUS_UNKNOWN,
                          record.started_at, "the run ended while vkcmd was down and its exit was not recorded")

    @staticmethod
    def _report_of_exit_file(run: _Run, code: int, recorded_at: float) -> ExitReport:
        # the file's mtime comes from the kernel's coarse clock: it may lag started_at by a tick
        return ExitReport(run.key, run.run_id, code, rp.signal_of(code), max(recorded_at, run.record.started_at),
                          rp.reason_of(code), run.record.started_at)

    @staticmethod
    def _report_of(record: RunRecord) -> ExitReport:
        return ExitReport(record.key, record.run_id, record.exit_code, record.signal,
                          record.finished_at or 0.0, record.reason or rp.reason_of(record.exit_code),
                          record.started_at, record.message)

    def _record_exit(self, run: _Run, report: ExitReport) -> None:
        record = run.record
        record.exit_code, record.signal, record.finished_at = report.exit_code, report.signal, report.finished_at
        record.reason, record.message = report.reason, report.message
        try:
            self._store.write(record)
        except OSError as err:
            log.error("cannot record exit", extra=fields(key=run.key, run=run.run_id, error=str(err)))
        run.exit = report

    # -- exits (reaper thread) -----------------------------------------------------------------

    def _leader_exited(self, pid: int) -> None:
        with self._lock:
            run = self._by_pid.pop(pid, None)
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
            report = self._report_of_exit_file(run, *recorded)
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
            self._record_exit(run, report)               # on disk before anyone hears of it
        code, reason = report.exit_code, report.reason
        with self._cond:
            run.leader_alive = False
            if cpu:
                run.cpu.add_final(cpu)
            if run.done_cbs or not run.current:
                self._sweep = True
                self._cond.notify_all()
        log.debug("run exited", extra=fields(key=run.key, run=run.run_id, exit_code=code, reason=reason))
        if not run.silent:
            try:
                self._on_exit(report)
            except Exception:
                log.exception("on_exit failed for %s", run.key)

    # -- scanner thread ------------------------------------------------------------------------

    def _scan_loop(self) -> None:
        self._next_scan = time.monotonic()
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    wake = min(self._next_scan, self._next_deadline())
                    if self._sweep or now >= wake:
                        break
                    self._cond.wait(wake - now)
                if self._stopping:
                    return
                self._sweep = False
            periodic = now >= self._next_scan
            if periodic:
                self._next_scan = now + self._interval
            try:
                self._cycle(periodic)
            except Exception:
                log.exception("runtime scan failed")

    def _next_deadline(self) -> float:
        heap = self._deadlines
        while heap:
            at, run_id = heap[0]
            run = self._by_id.get(run_id)
            if run is not None and run.kill_deadline == at:
                return at
            heapq.heappop(heap)
        return float("inf")

    def _set_deadline(self, run: _Run, at: float, term: bool) -> None:
        """(lock held) Kill ``run`` at ``at`` unless it is already due earlier; SIGTERM first."""
        if term and not run.termed:
            run.term_pending = True
        if run.kill_deadline is None or at < run.kill_deadline:
            run.kill_deadline = at
            heapq.heappush(self._deadlines, (at, run.run_id))

    def _scan(self, *, full: bool = False, stat_runs=(), mem_runs=()) -> Snapshot:
        """A tracker scan with the current runs, folded into the CPU accounts."""
        with self._lock:
            live = {r.pid: r.run_id for r in self._by_id.values() if r.leader_alive}
            known = set(self._by_id)
        snap = self._tracker.scan(live, known, stat_runs=stat_runs, mem_runs=mem_runs, full=full)
        with self._lock:
            ids = set(snap.vanished) | (set(snap.members) if full else set())
            for run_id in ids:
                run = self._by_id.get(run_id)
                if run is not None:
                    run.cpu.update(snap.members.get(run_id, ()), snap.vanished.get(run_id, ()))
        return snap

    def _cycle(self, periodic: bool) -> None:
        now = time.monotonic()
        with self._lock:
            runs = [r for r in self._by_id.values() if not r.starting]
            to_term = [r for r in runs if r.term_pending and r.leader_alive]
            mem_runs = {r.run_id for r in runs if periodic and r.memory_limit and r.leader_alive
                        and r.kill_deadline is None}
            # runs being ended or waited for: read their members, so that zombies count as gone
            ending = {r.run_id for r in runs if r.term_pending or r.kill_deadline is not None
                      or r.done_cbs or not r.leader_alive}
        snap = self._scan(stat_runs=ending, mem_runs=mem_runs)
        with self._lock:
            for r in to_term:
                r.term_pending, r.termed = False, True
            for run_id in mem_runs:
                r = self._by_id.get(run_id)
                members = snap.members.get(run_id, ())
                _, used = memory_of(members)
                if r is not None and r.leader_alive and used > r.memory_limit:
                    r.kill_reason = rp.OOM_KILLED
                    r.kill_deadline = now
                    log.info("memory limit exceeded", extra=fields(key=r.key, run=r.run_id, used=used,
                                                                   limit=r.memory_limit))
            to_kill = [r for r in self._by_id.values() if not r.starting and (
                (r.kill_deadline is not None and r.kill_deadline <= now and r.leader_alive)
                or (not r.leader_alive and snap.members.get(r.run_id)))]
            for r in to_kill:
                r.kill_deadline = None
        for r in to_term:
            self._signal_run(r, snap, signal.SIGTERM)
        if to_kill:
            snap = self._stop_and_kill(to_kill, snap)
        self._finish(snap)

    def _signal_run(self, run: _Run, snap: Snapshot, sig: int) -> None:
        """``sig`` once to every process of ``run``: the group at once, then the rest one by one."""
        try:
            os.killpg(run.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for p in snap.members.get(run.run_id, ()):
            if p.pgrp != run.pid:
                _kill(p.pid, sig)
        log.info("run signalled", extra=fields(key=run.key, run=run.run_id, signal=signal.Signals(sig).name))

    def _stop_and_kill(self, runs: list[_Run], snap: Snapshot) -> Snapshot:
        """Freeze every process of ``runs`` (re-scanning until no new one appears), then kill all."""
        ids = [r.run_id for r in runs]
        groups = [r.pid for r in runs if r.leader_alive and r.pid]
        for pgid in groups:
            _killpg(pgid, signal.SIGSTOP)
        stopped: dict[tuple[int, int], str] = {}
        for _ in range(_MAX_STOP_ROUNDS):
            new = [p for run_id in ids for p in snap.members.get(run_id, ()) if (p.pid, p.start) not in stopped]
            if not new:
                break
            for p in new:
                _kill(p.pid, signal.SIGSTOP)
                stopped[p.pid, p.start] = p.run_id
            snap = self._scan(stat_runs=ids)
        else:
            log.warning("processes kept appearing while stopping runs", extra=fields(runs=",".join(ids)))
        for pid, _ in stopped:
            _kill(pid, signal.SIGKILL)
        for pgid in groups:
            _killpg(pgid, signal.SIGKILL)
        for r in runs:
            why = r.kill_reason or ("terminate" if r.leader_alive else "leftovers")
            log.info("run killed", extra=fields(key=r.key, run=r.run_id, reason=why,
                                                processes=sum(1 for v in stopped.values() if v == r.run_id)))
        return snap

    def _finish(self, snap: Snapshot) -> None:
        """Done callbacks of runs that are gone; drop runs nobody needs any more."""
        calls = []
        now = time.monotonic()
        with self._lock:
            calls.extend(self._orphan_done)
            self._orphan_done.clear()
            waiting = False
            for run in list(self._by_id.values()):
                if run.starting or run.leader_alive:
                    continue
                gone = not snap.members.get(run.run_id)
                if not gone:
                    waiting = waiting or bool(run.done_cbs) or not run.current
                    continue
                calls.extend((run.key, cb) for cb in run.done_cbs)
                run.done_cbs.clear()
                if not run.current:
                    del self._by_id[run.run_id]
                    self._store.remove(run.run_id)
            if waiting:
                self._next_scan = min(self._next_scan, now + _DONE_RECHECK)
        for key, cb in calls:
            try:
                cb(key)
            except Exception:
                log.exception("on_done failed for %s", key)

    def _drop_failed(self, run: _Run, previous: _Run | None) -> None:
        with self._lock:
            self._by_id.pop(run.run_id, None)
            if self._by_key.get(run.key) is run:
                if previous is not None:
                    self._by_key[run.key] = previous
                else:
                    del self._by_key[run.key]
        self._store.remove(run.run_id)

    def _require_started(self) -> None:
        if self._scanner is None:
            raise RuntimeError("Runtime.start() first")


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
