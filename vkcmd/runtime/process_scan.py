"""The scanner: the thread that scans the process table for all runs, and the usage snapshot.

One scan of the process table per interval for all runs, plus scans on demand. It sends the
SIGTERM of a termination, runs the grace timers (one heap, one condition: no thread per run), stops
and kills whatever is left (SIGSTOP every process, re-scan until no new one appears, SIGKILL all),
enforces memory limits, kills what an ended run left behind, and calls the done callbacks. While
someone asks for usage, a periodic scan reads every member once per usage interval and keeps the
result as the usage snapshot. Works on the ``RunTable`` it is given; knows nothing of spawning.
"""

from __future__ import annotations

import ctypes
import heapq
import logging
import os
import signal
import time

from collections.abc import Collection

from vkcmd.logfmt import fields
from vkcmd.runtime import reaper as rp
from vkcmd.runtime.pgidfiles import PgidFiles
from vkcmd.runtime.process_run import Run, RunTable
from vkcmd.runtime.runindex import RunIndex
from vkcmd.runtime.state import StateStore
from vkcmd.runtime.tracker import Snapshot, Tracker
from vkcmd.runtime.usage import Usage, memory_of

log = logging.getLogger(__name__)

#: The share of a core the background usage scans may spend reading the members (they are spaced out
#: beyond it; each also costs a pass over the runs, and the answers built from it) ...
_USAGE_BUDGET = 0.0025
#: ... up to this interval (seconds) between them.
_USAGE_INTERVAL_MAX = 10.0
#: Rounds of SIGSTOP + re-scan before the SIGKILL, at most (each round stops what the last one found).
_MAX_STOP_ROUNDS = 20
#: A periodic scan lists /proc only when a run changed, a run is being ended, usage is measured, a
#: run follows a named group or vkcmd has a child that leads no run (an exec, a probe, a hook: its
#: processes carry the marker but descend from no leader) - or else when the last listing is older
#: than what keeps listing within this share of a core, at most ``_LIST_INTERVAL_MAX`` seconds. A
#: process of a live run descends from its leader (a child subreaper) and is attributed by
#: parentage at whichever listing comes next; the end of a run always lists.
_LIST_BUDGET = 0.0025
_LIST_INTERVAL_MAX = 5.0
#: While someone waits for a run to be gone, re-scan this often (seconds) instead of each interval.
_DONE_RECHECK = 0.05
#: ... for this many sweeps of a run at most; then at the scan interval.
_MAX_FAST_SWEEPS = 40
#: A sweep (a cycle asked for between periodic scans) waits this many times the CPU time the last
#: cycle took: in a wave of thousands of runs ending, each cycle (a /proc listing) serves every
#: run that changed meanwhile, and the scanner takes at most a third of a core instead of all of it.
_SWEEP_SPACING = 2.0


class Scanner:
    """The scanner thread (``run``) and scans on demand (``scan``) over one ``RunTable``.

    ``interval``: seconds between periodic scans; ``usage_interval``: how often a periodic scan
    measures every run while usage was asked in the last ``usage_linger`` seconds - at least; less
    often when reading every member costs more than ``_USAGE_BUDGET`` of a core at that pace
    (thousands of runs), up to every ``_USAGE_INTERVAL_MAX`` seconds (as the kubelet's cAdvisor
    housekeeping).
    """

    def __init__(self, table: RunTable, tracker: Tracker, store: StateStore, *, interval: float,
                 usage_interval: float, usage_linger: float):
        self.table = table
        self.tracker = tracker
        self.store = store
        self.interval = interval
        self._next_scan = 0.0
        self._usage_base = self._usage_interval = usage_interval
        self._usage_linger = usage_linger
        self._usage_stale = 0.0
        self._pace(0.0)
        self._usage: dict[str, tuple[str, Usage]] = {}   # key -> (run id, usage) of the last full scan
        self._usage_at = float("-inf")                   # time.monotonic() of that scan
        self._current: tuple | None = None               # (_usage, table version, what _current_usage gave)
        self._usage_wanted_until = float("-inf")         # measure in the background until then
        self._pgid_files = PgidFiles()
        self._pgid_named: dict[str, int] = {}            # run id -> the group its pgid file names now
        self._following: set[str] = set()                # runs with a named_pgid set
        self._index = RunIndex()                         # what a cycle needs of the runs
        self._kids: tuple = (None, -1, True)   # (vkcmd's children listed, table version, one leads no run)

    def run(self) -> None:
        """The thread's loop, until ``table.stopping``."""
        table = self.table
        self._next_scan = time.monotonic()
        sweep_after = 0.0                    # no sweep before then (see _SWEEP_SPACING)
        while True:
            with table.cond:
                while not table.stopping:
                    now = time.monotonic()
                    wake = min(self._next_scan, table.next_deadline())
                    if table.sweep:
                        wake = min(wake, sweep_after)
                    if now >= wake:
                        break
                    table.cond.wait(wake - now)
                if table.stopping:
                    return
                table.sweep = False
            periodic = now >= self._next_scan
            if periodic:
                self._next_scan = now + self.interval
            cost = time.thread_time()
            try:
                self._cycle(periodic)
            except Exception:
                log.exception("runtime scan failed")
            sweep_after = time.monotonic() + _SWEEP_SPACING * (time.thread_time() - cost)

    # -- usage ---------------------------------------------------------------------------------

    def _pace(self, cost: float) -> None:
        """(lock held, or before the thread starts) The background measuring interval after a full
        scan whose reading of the members cost ``cost`` CPU seconds, and the age beyond which usage() scans itself (the
        scanner is late, or was not asked to measure)."""
        self._usage_interval = max(self._usage_base, min(_USAGE_INTERVAL_MAX, cost / _USAGE_BUDGET))
        self._usage_stale = max(2 * self._usage_interval, self._usage_interval + 2 * self.interval)

    def wanted_usage(self) -> dict[str, Usage] | None:
        """Keep measuring for the next ``usage_linger`` seconds; the latest snapshot's usage of the
        current runs, or None when it is stale (the caller then ``scan(full=True)``s itself)."""
        now = time.monotonic()
        with self.table.lock:
            self._usage_wanted_until = now + self._usage_linger
            if now - self._usage_at <= self._usage_stale:
                return self._current_usage()
        return None

    def measure(self, snap: Snapshot) -> dict[str, Usage]:
        """Keep a full scan's usage of every running run as the latest snapshot; return the latest."""
        table = self.table
        with table.lock:
            if snap.taken_at >= self._usage_at:          # else a newer one is kept already
                usage = {}
                for run in table.by_key.values():
                    members = snap.members.get(run.run_id)
                    if not run.leader_alive or not members or run.info is None:
                        continue
                    rss, ws = memory_of(members)
                    usage[run.key] = (run.run_id, Usage(run.cpu.value, rss, ws, len(members),
                                                        run.info.started_at, snap.wall))
                self._usage, self._usage_at = usage, snap.taken_at
            return self._current_usage()

    def _current_usage(self) -> dict[str, Usage]:
        """(lock held) The snapshot's usage of the runs that are still the current, living ones: the
        same dict (never change it) while neither the snapshot nor the runs changed."""
        made = self._current
        if made is not None and made[0] is self._usage and made[1] == self.table.version:
            return made[2]
        by_key = self.table.by_key
        out = {}
        for key, (run_id, usage) in self._usage.items():
            run = by_key.get(key)
            if run is not None and run.run_id == run_id and run.leader_alive:
                out[key] = usage
        self._current = (self._usage, self.table.version, out)
        return out

    def _own_child(self) -> bool:
        """Whether vkcmd has a child that leads no run (or the kernel cannot tell). The list of
        vkcmd's children (thousands of leaders) is looked through only when it or the runs changed."""
        kids = self.tracker.own_children()
        if kids is None:
            return True
        with self.table.lock:
            if (kids, self.table.version) != self._kids[:2]:
                foreign = any(int(pid) not in self.table.by_pid for pid in kids.split())
                self._kids = (kids, self.table.version, foreign)
        return self._kids[2]

    def _list_interval(self) -> float:
        """Seconds between listings of /proc while nothing asks for one (see ``_LIST_BUDGET``)."""
        return min(_LIST_INTERVAL_MAX, max(self.interval, self.tracker.list_cost / _LIST_BUDGET))

    def _usage_due(self, now: float) -> bool:
        """(lock held) Should this periodic scan measure usage? While wanted, every ``usage_interval``
        (a periodic scan less than half a scan interval early counts as on time)."""
        return (now < self._usage_wanted_until
                and now - self._usage_at >= self._usage_interval - self.interval / 2)

    # -- scans ---------------------------------------------------------------------------------

    def scan(self, *, full: bool = False, stat_runs: Collection[str] = (), mem_runs: Collection[str] = (),
             sessions: tuple[dict[int, str], Collection[str], dict[int, str]] | None = None,
             listing: bool = True) -> Snapshot:
        """A tracker scan with the current runs (``sessions``: what ``RunTable.live_sessions`` gives,
        when the caller has it already), folded into the CPU accounts."""
        live, known, groups = sessions or self.table.live_sessions()
        snap = self.tracker.scan(live, known, stat_runs=stat_runs, mem_runs=mem_runs, full=full, groups=groups,
                                 listing=listing)
        with self.table.lock:
            ids = set(snap.vanished) | (set(snap.members) if full else set())
            for run_id in ids:
                run = self.table.by_id.get(run_id)
                if run is not None:
                    run.cpu.update(snap.members.get(run_id, ()), snap.vanished.get(run_id, ()))
        return snap

    def _cycle(self, periodic: bool) -> None:
        table = self.table
        now = time.monotonic()
        index = self._index
        with table.lock:
            changed = index.update(table)
            to_term = list(index.to_term.values())
            ending, live_dirs = set(index.ending), index.live_dirs
            mem_runs = set(index.limited) if periodic else set()
            sessions, known, groups = index.views()
            measure = periodic and self._usage_due(now)
        if periodic:
            self._read_pgid_files(live_dirs)
            with table.lock:                 # what the pgid files name now
                groups = {r.named_pgid: r.run_id for r in map(table.by_id.get, self._following)
                          if r is not None and r.leader_alive and r.named_pgid is not None}
        listing = (not periodic or changed or bool(ending or to_term or groups) or measure
                   or now - self.tracker.listed_at >= self._list_interval() or self._own_child())
        snap = self.scan(stat_runs=ending, mem_runs=mem_runs, full=measure, sessions=(sessions, known, groups),
                         listing=listing)
        if measure:
            self.measure(snap)
            with table.lock:
                self._pace(self.tracker.full_read_cost)
        # A SIGTERM is held back until the run's command exists: sent while the monitor is still
        # starting it, it reaches only the monitor, or the monitor's fork in the instant after the
        # fork and before its traps are reset, and is lost there.
        held = [r for r in to_term if not _command_started(r, snap) and now - r.launched_at < _TERM_HOLD_MAX]
        to_term = [r for r in to_term if r not in held]
        with table.lock:
            if held:
                table.sweep = True  # look again at once (the loop re-scans only the runs being ended)
            for r in to_term:
                r.term_pending, r.termed = False, True
                table.changed(r)
            over = set()
            for run_id in mem_runs:
                r = table.by_id.get(run_id)
                members = snap.members.get(run_id, ())
                _, used = memory_of(members)
                if r is not None and r.leader_alive and used > r.memory_limit:
                    r.kill_reason = rp.OOM_KILLED
                    r.kill_deadline = now
                    over.add(run_id)
                    table.changed(r)
                    log.info("memory limit exceeded", extra=fields(key=r.key, run=r.run_id, used=used,
                                                                   limit=r.memory_limit))
            # only runs being ended (or just over their limit) can be due: every other has no deadline
            candidates = [r for r in map(table.by_id.get, ending | over) if r is not None]
            to_kill = [r for r in candidates if not r.starting and (
                (r.kill_deadline is not None and r.kill_deadline <= now and r.leader_alive)
                or (not r.leader_alive and snap.members.get(r.run_id)))]
            for r in to_kill:
                r.kill_deadline = None
                r.sweeps += 1
                table.changed(r)
            if periodic and index.gone:
                # an ended run's process found after all (a late marker, a named group): end it again
                for run_id in index.gone & snap.members.keys():
                    r = table.by_id[run_id]
                    r.gone = False
                    table.changed(r)
                    table.sweep = True
        for r in to_term:
            self._signal_run(r, snap, signal.SIGTERM)
        if held:
            time.sleep(_TERM_HOLD_RECHECK)
        if to_kill:
            snap = self._stop_and_kill(to_kill, snap)
        self._finish(snap, ending)

    def _read_pgid_files(self, live: dict[str, str]) -> None:
        """A run's pgid file may have been rewritten to name another process group (JIRIAF scripts
        do, for a workload started elsewhere): that group is then followed as the run's (its
        processes of vkcmd's user; see ``Tracker.scan``). Never pgid 0 or 1, vkcmd's own group, or
        another run's group. ``live``: run id -> container dir of the runs whose leader lives. A file
        is read again only when ``PgidFiles`` saw it change (or cannot watch it); what it named is
        checked again at every periodic scan."""
        by_id = self.table.by_id
        for run_id in self._pgid_files.changed(live):
            pgid = named_pgid(live[run_id])
            r = by_id.get(run_id)
            if pgid is None or r is None or pgid == r.pid:       # its own group (as written at launch)
                self._pgid_named.pop(run_id, None)
            else:
                self._pgid_named[run_id] = pgid
        for run_id in [run_id for run_id in self._pgid_named if run_id not in live]:   # not keys() - live:
            del self._pgid_named[run_id]                                               # that walks all of live
        with self.table.lock:
            leaders = self.table.by_pid
            for run_id in self._pgid_named.keys() | self._following:
                r = by_id.get(run_id)
                if r is None:
                    continue
                pgid = self._pgid_named.get(run_id)
                if pgid is not None and (pgid == r.pid or pgid in leaders or pgid in (1, os.getpgrp())):
                    pgid = None
                if pgid != r.named_pgid:
                    self.table.changed(r)
                    if pgid is not None:
                        log.info("following the process group its pgid file names",
                                 extra=fields(key=r.key, run=r.run_id, pgid=pgid))
                r.named_pgid = pgid
            self._following = {run_id for run_id in self._pgid_named if run_id in by_id
                               and by_id[run_id].named_pgid is not None}

    def close(self) -> None:
        """Release the pgid files' watches (after the thread ended)."""
        self._pgid_files.close()

    def _signal_run(self, run: Run, snap: Snapshot, sig: int) -> None:
        """``sig`` once to every process of ``run``: the group at once, then the rest one by one."""
        _killpg(run.pid, sig)
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
            snap = self.scan(stat_runs=ids)
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

    def _finish(self, snap: Snapshot, ending: set[str]) -> None:
        """Done callbacks of runs that are gone; drop runs nobody needs any more. Only runs of
        ``ending`` (every run whose leader was gone at the start of the cycle) can be."""
        table = self.table
        calls = []
        now = time.monotonic()
        with table.lock:
            calls.extend(table.orphan_done)
            table.orphan_done.clear()
            waiting = False
            for run in [r for r in map(table.by_id.get, ending) if r is not None]:
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
                run.gone = True
                table.changed(run)
                if not run.current:
                    del table.by_id[run.run_id]
                    self.store.remove(run.run_id)
            if waiting:
                self._next_scan = min(self._next_scan, now + _DONE_RECHECK)
        for key, cb in calls:
            try:
                cb(key)
            except Exception:
                log.exception("on_done failed for %s", key)


def named_pgid(container_dir: str) -> int | None:
    """The process group ``<container_dir>/pgid`` names (a positive number), or None. Read, never
    followed through a link; a file that is not a short number names nothing."""
    try:
        fd = os.open(os.path.join(container_dir, "pgid"), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        text = os.read(fd, 32)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        pgid = int(text.strip())
    except ValueError:
        return None
    return pgid if pgid > 0 else None


# Signals are sent through libc by ctypes, which lets go of the GIL for the call: the woken process
# often takes this CPU at once (2 cores, a wave of thousands), and ``os.kill`` would hold the GIL
# through that, stalling every vkcmd thread (9.6 % of the GIL samples of a 2000-pod delete wave).
# A missing process (ESRCH) or one we may not signal (EPERM) is no error here.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.kill.argtypes = _libc.killpg.argtypes = (ctypes.c_int, ctypes.c_int)


def _kill(pid: int, sig: int) -> None:
    if pid > 0:           # kill(0) and kill(-1) would reach far more than one process
        _libc.kill(pid, sig)


def _killpg(pgid: int, sig: int) -> None:
    if pgid > 0:          # killpg(0) would be our own group
        _libc.killpg(pgid, sig)


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
