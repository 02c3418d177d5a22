"""Which processes belong to which run: one scan of the process table for all runs.

A process belongs to a run when it is in the session of a run whose leader lives, when its parent
did (at a scan that saw both), or when its environment carries the run's ``VKCMD_RUN`` marker.
Each run's leader is a child subreaper, so an orphan of the run (double fork, setsid, env -i) is
re-parented to the leader and attributed by parentage at any later scan. Once attributed, a
process stays its run's for life, so escaping the session changes nothing. A process is judged
once in its life: attributed ones are remembered by (pid, start time), the rest by pid until the
pid leaves /proc - except vkcmd's own children, never taken as foreign for good (a leader may be
seen between posix_spawn's clone and its exec, before it carries its marker; ``claim`` drops any
verdict about a leader once it is registered). A zombie is no member (it is gone, whether or not
its parent, maybe an init that never reaps, collects it); /proc/<pid>/environ is read at most once
per process, and only when nothing else attributed it.

Cost: a scan lists /proc (only when /proc/loadavg says a task was created or reaped since the last
listing, and only when the caller asks: see ``process_scan._LIST_BUDGET``) and reads the stat file
of new pids only; members are kept by run, and a scan visits only those it reads (the orphans are
kept as membership and parentage change: ``parentage``). Members' statistics are read
only when asked (``stat_runs`` / ``mem_runs`` / ``full``) - except orphans (a member whose parent is
not a member: nobody in the run will reap it and fold its CPU time into their own), whose stat is
read at every scan so that their CPU is not lost when they end. A member's stat and statm are read
through fds kept open on them (``pread``: no open/close per read, and a read fails once the process
is gone, so a reused pid is never read in its place); at most ``fd_share`` of vkcmd's fd limit is
kept so, beyond it members are read with open/read/close. A stat text the same as the one parsed
last is not parsed again, and a full scan reads statm only for members whose stat text changed
(an idle process keeps its memory), or whose statm is ``_MEM_REFRESH`` full scans old.
"""

from __future__ import annotations

import collections
import os
import resource
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from vkcmd.runtime.parentage import Parentage
from vkcmd.runtime.process_stat import Stat, children_of, parse_stat, parse_statm, read_marker, read_stat

#: fds vkcmd's limit keeps for everything else (pidfds, sockets, log files, inotify) before the tracker.
_FD_RESERVE = 1024
#: A full scan reads a member's statm when its stat text changed since the last read, or when its
#: statm is this many full scans old (a process whose stat did not change did not run, fault or lose
#: pages - its resident count is in the stat text - so its memory is the same; this bounds any doubt).
_MEM_REFRESH = 6
_NEVER = -(1 << 62)
#: What ``_stat`` gives when the member's stat text is the one it parsed last: nothing of it changed.
_SAME = object()


@dataclass(slots=True, eq=False)
class Proc:
    """A member process as last read. Owned by the tracker: read it, don't keep it past a scan."""
    pid: int
    start: int
    run_id: str
    ppid: int
    pgrp: int
    sid: int
    cpu_ticks: int
    rss_pages: int
    anon_pages: int = 0
    stat_fd: int = -1
    mem_fd: int = -1
    stat_hash: int = 0              # hash of its stat text as last parsed (0: never)
    mem_scan: int = _NEVER          # the full scan (``Tracker.full_scans``) that last read its statm


@dataclass
class Snapshot:
    """The result of one scan: the members of each known run (in no order), and the members that
    vanished since the previous scan, with their last values."""
    taken_at: float                 # time.monotonic()
    wall: float                     # time.time()
    members: dict[str, list[Proc]] = field(default_factory=dict)
    vanished: dict[str, list[Proc]] = field(default_factory=dict)
    known: Collection[str] = ()     # the runs it looked for: a run not among them may have members

    def pids(self, run_id: str) -> list[int]:
        return sorted(p.pid for p in self.members.get(run_id, ()))


class Tracker:
    """``fd_share``: the part of vkcmd's RLIMIT_NOFILE (as it is at the first scan, after the runtime
    raised it), less a reserve, that fds kept on members' stat and statm files may take."""

    def __init__(self, proc: str = "/proc", *, fd_share: float = 0.5):
        self.proc = proc
        self._lock = threading.Lock()
        self._members: dict[int, Proc] = {}
        self._by_run: dict[str, dict[int, Proc]] = {}   # the same members, by run
        self._parentage = Parentage(self._members)   # the orphans among the members
        self._orphans = self._parentage.orphans      # (the same set)
        self._shared: dict[str, list[Proc]] = {}     # the snapshots' members, shared until a run's change
        self._moved: set[str] = set()                # runs whose members changed since ``_shared``
        self._promoted_for: object = None            # the ``known`` the marked pids were last promoted with
        self._listing: tuple[bytes, set[int]] | None = None   # (loadavg's pid fields, pids) of the last listing
        self._foreign: dict[int, str | None] = {}   # pid -> its marker (None: none, or unreadable)
        self._marked: dict[int, str] = {}            # foreign pids with a marker of an unknown run
        self._claimed: collections.deque[int] = collections.deque()   # see claim()
        self._foreign_pgrp: dict[int, int] = {}      # foreign pid -> its process group when judged
        self._groups: dict[int, str] = {}            # the named groups of the last scan
        self._uid = os.geteuid()
        self._fd_share = fd_share
        self._fd_budget: int | None = None           # fds the tracker may keep open (set at the first scan)
        self._fds = 0                                # fds kept open now
        self._self = os.getpid()
        self.scans = 0                               # scans of /proc, of any kind
        self.full_scans = 0                          # scans that read every member (``full``)
        self.full_read_cost = 0.0                    # thread CPU seconds the last full scan spent reading members
        self.listings = 0                            # listings of /proc (``os.listdir``)
        self.list_cost = 0.0                         # thread CPU seconds the last listing took
        self.listed_at = float("-inf")               # time.monotonic() of the last scan that looked at /proc
        self._judged: set[int] | None = None         # the listing whose pids were all judged
        self._unjudged = False                       # a pid was left to judge at the next scan

    def scan(self, live_sids: Mapping[int, str], known: Collection[str], *,
             stat_runs: Collection[str] = (), mem_runs: Collection[str] = (),
             full: bool = False, groups: Mapping[int, str] | None = None, listing: bool = True) -> Snapshot:
        """One pass over /proc. ``live_sids``: session id -> run id of runs whose leader lives
        (their session cannot be reused while the leader lives). ``known``: every run id whose
        processes are wanted (live and ended ones). Reads stat of the members of ``stat_runs``,
        statm of the members of ``mem_runs``, both for every member when ``full``. ``groups``:
        process group -> run id of groups a run named as its own (a rewritten pgid file): their
        processes of vkcmd's user that no run holds yet become that run's. Without ``listing``,
        the pids of the last listing are taken as the current ones (the caller knows that no
        process it must not miss can have appeared; members still vanish when read)."""
        groups = groups or {}
        with self._lock:
            if self._fd_budget is None:
                soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                soft = soft if soft != resource.RLIM_INFINITY else 1 << 20
                self._fd_budget = max(0, int((soft - _FD_RESERVE) * self._fd_share))
            self.scans += 1
            if full:
                self.full_scans += 1
            snap = Snapshot(time.monotonic(), time.time(), known=known)
            current = self._list() if listing or self._listing is None else self._listing[1]
            if current is None:
                return snap
            self._parentage.live_sessions(live_sids)
            if current is not self._judged or self._claimed or self._unjudged:
                for pid in self._members.keys() - current:
                    self._vanish(self._pop(pid), snap)
                for pid in self._foreign.keys() - current:
                    del self._foreign[pid]
                    self._marked.pop(pid, None)
                    self._foreign_pgrp.pop(pid, None)
                self._apply_claims()
                new = current - self._members.keys() - self._foreign.keys()
                new.discard(self._self)
                self._unjudged = False
                self._admit(new, live_sids, known, groups)
                self._apply_claims()
                self._judged = current
            if groups.keys() - self._groups:
                self._adopt_groups(groups, known)
            self._groups = dict(groups)
            if self._marked and known is not self._promoted_for:   # a marker's run may be known now
                self._promote(known)
            self._promoted_for = known
            cost = time.thread_time()
            self._read(snap, known, live_sids, set(stat_runs), set(mem_runs), full)
            if full:
                self.full_read_cost = time.thread_time() - cost
            return snap

    def _list(self) -> set[int] | None:
        """The pids in /proc (None when it cannot be listed). Listed again only when a task was
        created or reaped since the last listing: /proc/loadavg's last pid and task count unchanged
        mean the same pids (a zombie stays listed until reaped)."""
        self.listed_at = time.monotonic()
        try:
            with open(f"{self.proc}/loadavg", "rb") as handle:
                token = handle.read().split()[3:5]
        except OSError:
            token = None
        token = b" ".join(token) if token and len(token) == 2 else None
        if token is not None and self._listing is not None and self._listing[0] == token:
            return self._listing[1]
        cost = time.thread_time()
        try:
            names = os.listdir(self.proc)
        except OSError:
            self._listing = None
            return None
        current = set(map(int, filter(str.isdigit, names)))
        self.listings += 1
        self.list_cost = time.thread_time() - cost
        self._listing = (token, current) if token is not None else (None, current)
        return current

    def own_children(self) -> bytes | None:
        """vkcmd's own children now, as ``children_of`` gives them (None when the kernel cannot tell)."""
        return children_of(self._self, self.proc)

    def _add(self, p: Proc) -> None:
        """(lock held) ``p`` is a member from now on."""
        self._members[p.pid] = p
        self._by_run.setdefault(p.run_id, {})[p.pid] = p
        self._moved.add(p.run_id)
        self._parentage.added(p)

    def _pop(self, pid: int) -> Proc:
        """(lock held) ``pid`` is no member any more."""
        p = self._members.pop(pid)
        run = self._by_run[p.run_id]
        del run[pid]
        if not run:
            del self._by_run[p.run_id]
        self._moved.add(p.run_id)
        self._parentage.removed(p)
        return p

    def _shared_members(self) -> dict[str, list[Proc]]:
        """(lock held) Every run's members for a snapshot: the previous snapshot's dict while no
        membership moved, else a copy with the moved runs' lists made anew."""
        if self._moved:
            shared = dict(self._shared)
            for run in self._moved:
                procs = self._by_run.get(run)
                if procs:
                    shared[run] = list(procs.values())
                else:
                    shared.pop(run, None)
            self._shared, self._moved = shared, set()
        return self._shared

    def claim(self, pid: int) -> None:
        """``pid`` is a leader vkcmd just spawned: forget any verdict a scan reached about it before
        it was registered (it is judged again, as a member, at the next scan). Never waits for a
        scan in progress (a deque is safe to append to from any thread): applied at the start and
        the end of every scan."""
        self._claimed.append(pid)

    def _apply_claims(self) -> None:
        """(lock held)"""
        while self._claimed:
            pid = self._claimed.popleft()
            self._foreign.pop(pid, None)
            self._marked.pop(pid, None)
            self._foreign_pgrp.pop(pid, None)

    def markers(self, prefix: str) -> set[str]:
        """The markers starting with ``prefix`` of live processes that belong to no known run (as of
        the last scan)."""
        with self._lock:
            return {m for m in self._marked.values() if m.startswith(prefix)}

    @property
    def open_fds(self) -> int:
        """fds kept open on members' stat and statm files now."""
        return self._fds

    def forget_all(self) -> None:
        with self._lock:
            for p in self._members.values():
                self._close(p)
            self._members.clear()
            self._by_run.clear()
            self._parentage.clear()
            self._shared, self._moved = {}, set()
            self._listing = self._promoted_for = self._judged = None
            self._foreign.clear()
            self._marked.clear()
            self._foreign_pgrp.clear()
            self._groups.clear()

    # -- internals -------------------------------------------------------------------------

    def _admit(self, new: set[int], live_sids: Mapping[int, str], known: Collection[str],
               groups: Mapping[int, str]) -> None:
        stats: dict[int, Stat] = {}
        for pid in new:
            st = read_stat(pid, self.proc)
            if st is not None:
                stats[pid] = st
        done: set[int] = set()

        def judge(st: Stat) -> None:
            done.add(st.pid)
            if st.state == "Z":                    # dead already, waiting for its parent: not a member
                self._foreign[st.pid] = None
                return
            run = live_sids.get(st.sid)
            if run is None:
                if st.ppid in stats and st.ppid not in done:
                    judge(stats[st.ppid])          # parents first (ancestry in one scan)
                parent = self._members.get(st.ppid)
                if parent is not None and parent.run_id in known:
                    run = parent.run_id
            if run is None and st.pgrp in groups and self._ours(st.pid):
                run = groups[st.pgrp]
            marker = None
            if run is None:
                marker = read_marker(st.pid, self.proc)
                if marker in known:
                    run = marker
            if run is None:
                if st.ppid == self._self:
                    # vkcmd's own child: maybe a leader caught between posix_spawn's clone and its
                    # exec (no marker yet, session not yet registered): judged again next scan
                    self._unjudged = True
                    return
                self._foreign[st.pid] = marker
                self._foreign_pgrp[st.pid] = st.pgrp
                if marker:
                    self._marked[st.pid] = marker
            else:
                self._add(Proc(st.pid, st.start, run, st.ppid, st.pgrp, st.sid, st.cpu_ticks, st.rss_pages))

        # by start time: a parent never starts after its child, so most parents come first
        for st in sorted(stats.values(), key=lambda s: s.start):
            if st.pid not in done:
                judge(st)

    def _ours(self, pid: int) -> bool:
        """Whether ``pid`` runs as vkcmd's user (the owner of /proc/<pid> is its effective uid)."""
        try:
            return os.stat(f"{self.proc}/{pid}").st_uid == self._uid
        except OSError:
            return False

    def _adopt_groups(self, groups: Mapping[int, str], known: Collection[str]) -> None:
        """Foreign processes of a newly named group (of vkcmd's user, not a zombie) join its run."""
        for pid in [pid for pid, pgrp in self._foreign_pgrp.items() if pgrp in groups]:
            st = read_stat(pid, self.proc)
            run = groups.get(st.pgrp) if st is not None else None
            if run is None or run not in known or st.state == "Z" or not self._ours(pid):
                continue
            del self._foreign[pid], self._foreign_pgrp[pid]
            self._marked.pop(pid, None)
            self._add(Proc(pid, st.start, run, st.ppid, st.pgrp, st.sid, st.cpu_ticks, st.rss_pages))

    def _promote(self, known: Collection[str]) -> None:
        for pid, marker in list(self._marked.items()):
            if marker not in known:
                continue
            st = read_stat(pid, self.proc)
            del self._marked[pid]
            del self._foreign[pid]
            self._foreign_pgrp.pop(pid, None)
            if st is not None:
                self._add(Proc(pid, st.start, marker, st.ppid, st.pgrp, st.sid, st.cpu_ticks, st.rss_pages))

    def _read(self, snap: Snapshot, known: Collection[str], live_sids: Mapping[int, str],
              stat_runs: set[str], mem_runs: set[str], full: bool) -> None:
        """Read what was asked (and every orphan's stat), then list every run's members. Only the
        members read are visited: the orphans are found again only when membership, a member's
        parent or the live sessions changed."""
        for run in self._by_run.keys() - known:             # its run was dropped: no longer watched
            for pid in list(self._by_run[run]):
                self._close(self._pop(pid))
                self._foreign[pid] = self._marked[pid] = run
        self._parentage.live_sessions(live_sids)
        if full:
            chosen = list(self._members.values())
        else:
            chosen = [p for run in stat_runs | mem_runs for p in self._by_run.get(run, {}).values()]
            chosen.extend(self._members[pid] for pid in self._orphans
                          if self._members[pid].run_id not in stat_runs and self._members[pid].run_id not in mem_runs)
        scan = self.full_scans
        for p in chosen:
            run, pid = p.run_id, p.pid
            moved = True
            if full or run in stat_runs or pid in self._orphans:
                st = self._stat(p)
                if st is _SAME:
                    moved = False
                else:
                    if st is None or st.start != p.start or st.state == "Z":
                        self._vanish(self._pop(pid), snap)
                        if st is not None and st.start == p.start:
                            self._foreign[pid] = None      # a zombie: gone for us, though still listed
                        continue
                    if st.ppid != p.ppid or st.sid != p.sid:
                        self._parentage.moved(p, st.ppid, st.sid)  # re-parented (or a new session)
                    p.pgrp = st.pgrp
                    p.cpu_ticks = max(p.cpu_ticks, st.cpu_ticks)
                    p.rss_pages = st.rss_pages
            if run in mem_runs or (full and (moved or scan - p.mem_scan >= _MEM_REFRESH)):
                mem = self._statm(p)
                if mem is None:
                    self._vanish(self._pop(pid), snap)
                    continue
                p.rss_pages, p.anon_pages = mem
                # the first read is staggered, so that members started together are not all due at once
                p.mem_scan = scan - pid % _MEM_REFRESH if p.mem_scan == _NEVER else scan
        snap.members = self._shared_members()

    def _keep_fd(self, p: Proc, name: str) -> int:
        """An fd kept open on the member's /proc file ``name``; -1 when the budget is spent (or the
        open failed for want of fds: the budget shrinks to what is open); raises FileNotFoundError
        when the process is gone."""
        if self._fds >= self._fd_budget:
            return -1
        try:
            fd = os.open(f"{self.proc}/{p.pid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError):
            raise FileNotFoundError(p.pid) from None
        except OSError:
            self._fd_budget = self._fds        # EMFILE, ENFILE: keep no more
            return -1
        self._fds += 1
        return fd

    def _pread(self, p: Proc, fd: int, name: str, size: int) -> bytes:
        """The member's /proc file ``name``: through ``fd`` when kept (>= 0), else opened by name;
        raises OSError."""
        if fd >= 0:
            return os.pread(fd, size, 0)
        fd = os.open(f"{self.proc}/{p.pid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.read(fd, size)
        finally:
            os.close(fd)

    def _stat(self, p: Proc) -> Stat | None | object:
        """The member's stat, through its kept fd when it has (or can get) one; ``_SAME`` when its text
        is the one parsed last (not parsed again: nothing in it changed)."""
        if p.stat_fd < 0:
            try:
                p.stat_fd = self._keep_fd(p, "stat")
            except FileNotFoundError:
                return None
        try:
            data = self._pread(p, p.stat_fd, "stat", 1024)
            if not data:
                return None
            seen = hash(data)
            if seen == p.stat_hash:
                return _SAME                   # the same text: the same process (its start time is in it)
            st = parse_stat(p.pid, data)
        except (OSError, ValueError, IndexError):      # ESRCH: the process is gone (and reaped)
            return None
        p.stat_hash = seen
        return st

    def _statm(self, p: Proc) -> tuple[int, int] | None:
        """(resident, anonymous) pages from statm. Read rarely (see ``_MEM_REFRESH``), so the fd budget
        goes to stat first: a statm fd is kept only while there is room for every member's stat fd
        besides; else statm is opened by name and the process checked to be the same after the read
        (its kept stat fd still reads, or its start time)."""
        room = self._fds + len(self._members) < self._fd_budget
        if p.mem_fd < 0 and room:
            try:
                p.mem_fd = self._keep_fd(p, "statm")
            except FileNotFoundError:
                return None
        try:
            data = self._pread(p, p.mem_fd, "statm", 256)
            if p.mem_fd >= 0:
                if not room:                   # give it back to the members' stat fds
                    os.close(p.mem_fd)
                    p.mem_fd = -1
                    self._fds -= 1
            else:
                if p.stat_fd >= 0:
                    os.pread(p.stat_fd, 1, 0)           # raises once the process is gone: not a reused pid
                else:
                    st = read_stat(p.pid, self.proc)    # the same process still (not a reused pid)?
                    if st is None or st.start != p.start:
                        return None
            return parse_statm(data) if data else None
        except (OSError, ValueError, IndexError):
            return None

    def _vanish(self, p: Proc, snap: Snapshot) -> None:
        self._close(p)
        snap.vanished.setdefault(p.run_id, []).append(p)

    def _close(self, p: Proc) -> None:
        for fd in (p.stat_fd, p.mem_fd):
            if fd >= 0:
                os.close(fd)
                self._fds -= 1
        p.stat_fd = p.mem_fd = -1
