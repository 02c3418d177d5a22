"""The scanner thread: part of ``Runtime`` (a mixin over its tables).

One scan of the process table per interval for all runs, plus scans on demand. It sends the
SIGTERM of a termination, runs the grace timers (one heap, one condition: no thread per run), stops
and kills whatever is left (SIGSTOP every process, re-scan until no new one appears, SIGKILL all),
enforces memory limits, kills what an ended run left behind, and calls the done callbacks. While
someone asks for usage, a periodic scan reads every member once per usage interval and keeps the
result as the usage snapshot.
"""

from __future__ import annotations

import heapq
import logging
import os
import signal
import time

from vkcmd.logs import fields
from vkcmd.runtime import reaper as rp
from vkcmd.runtime.process_run import Run
from vkcmd.runtime.tracker import Snapshot
from vkcmd.runtime.usage import memory_of

log = logging.getLogger(__name__)

#: Rounds of SIGSTOP + re-scan before the SIGKILL, at most (each round stops what the last one found).
_MAX_STOP_ROUNDS = 20
#: While someone waits for a run to be gone, re-scan this often (seconds) instead of each interval.
_DONE_RECHECK = 0.05
#: ... for this many sweeps of a run at most; then at the scan interval.
_MAX_FAST_SWEEPS = 40


class ScanLoop:
    """The scanner's half of ``Runtime``. Uses the Runtime's lock, condition, tables and tracker."""

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

    def _set_deadline(self, run: Run, at: float, term: bool) -> None:
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
            measure = periodic and self._usage_due(now)
        snap = self._scan(stat_runs=ending, mem_runs=mem_runs, full=measure)
        if measure:
            self._measure(snap)
        # A SIGTERM is held back until the run's command exists: sent while the monitor is still
        # starting it, it reaches only the monitor, or the monitor's fork in the instant after the
        # fork and before its traps are reset, and is lost there.
        held = [r for r in to_term if not _command_started(r, snap) and now - r.launched_at < _TERM_HOLD_MAX]
        to_term = [r for r in to_term if r not in held]
        with self._lock:
            if held:
                self._sweep = True  # look again at once (the loop re-scans only the runs being ended)
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
                r.sweeps += 1
        for r in to_term:
            self._signal_run(r, snap, signal.SIGTERM)
        if held:
            time.sleep(_TERM_HOLD_RECHECK)
        if to_kill:
            snap = self._stop_and_kill(to_kill, snap)
        self._finish(snap)

    def _signal_run(self, run: Run, snap: Snapshot, sig: int) -> None:
        """``sig`` once to every process of ``run``: the group at once, then the rest one by one."""
        try:
            os.killpg(run.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for p in snap.members.get(run.run_id, ()):
            if p.pgrp != run.pid:
                _kill(p.pid, sig)
        log.info("run signalled", extra=fields(key=run.key, run=run.run_id, signal=signal.Signals(sig).name))

    def _stop_and_kill(self, runs: list[Run], snap: Snapshot) -> Snapshot:
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
                if run.starting or run.leader_alive or run.run_id not in snap.known:
                    continue
                gone = not snap.members.get(run.run_id)
                if not gone:
                    # re-check soon, but not for ever: a process we may not signal (setuid) stays
                    if run.sweeps <= _MAX_FAST_SWEEPS and (run.done_cbs or not run.current):
                        waiting = True
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


def _cmdline(pid: int) -> bytes:
    """The raw command line of ``pid`` (b"" when gone): a fork that has not exec'd yet has its parent's."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


#: How long a SIGTERM may wait for the run's command to start (then it goes out regardless).
_TERM_HOLD_MAX = 5.0
#: How soon a held SIGTERM is looked at again.
_TERM_HOLD_RECHECK = 0.01


def _command_started(run: Run, snap: Snapshot) -> bool:
    """Whether the monitor of ``run`` has a child that runs the command (its command line is no
    longer the monitor's own, as it is in the fork before ``exec``); also True once the monitor is
    gone or has no command line to compare."""
    leader = _cmdline(run.pid)
    if not leader:
        return True
    return any(p.ppid == run.pid and _cmdline(p.pid) not in (b"", leader) for p in snap.members.get(run.run_id, ()))
