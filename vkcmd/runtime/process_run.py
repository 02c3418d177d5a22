"""The runtime's runs in memory: one ``Run`` per run, and the one table that holds them all.

``RunTable`` is the single owner of the state the runtime's parts share - the lock and its
condition, the runs by key, by run id and by leader pid, the termination deadlines - and is
handed to the scanner (``process_scan``) and the recovery (``process_recover``), so none of them
reaches into another's fields. Internal to ``vkcmd.runtime``.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vkcmd.runtime.reaper import ExitReport
from vkcmd.runtime.spawn import RunInfo
from vkcmd.runtime.state import RunRecord
from vkcmd.runtime.usage import CpuAccount


@dataclass(eq=False, slots=True)
class Run:
    """One run as the Runtime tracks it: fields change under the table's lock only."""
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
    launched_at: float = field(default_factory=time.monotonic)  # a SIGTERM waits for the command at most a while
    kill_deadline: float | None = None   # monotonic time of the SIGSTOP/SIGKILL sweep
    kill_reason: str | None = None
    done_cbs: list = field(default_factory=list)
    cpu: CpuAccount = field(default_factory=CpuAccount)
    sweeps: int = 0                 # stop-and-kill passes over it (bounds the fast re-checks)
    named_pgid: int | None = None   # another process group its pgid file names (see process_scan)
    gone: bool = False              # ended, and a scan found nothing left of it


class RunTable:
    """Every run of one Runtime, and the lock that guards them and their fields.

    ``by_key``: the current run of each key; ``by_id``: every run still known (ended ones until
    nothing of them is left); ``by_pid``: runs whose leader lives, by leader pid. ``deadlines``:
    a heap of (monotonic time, run id) of kill sweeps, stale entries skipped. ``sweep``: the
    scanner should look at once. ``orphan_done``: done callbacks of keys without a run.
    Methods marked "(lock held)" expect the caller to hold ``lock``.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.by_key: dict[str, Run] = {}
        self.by_id: dict[str, Run] = {}
        self.by_pid: dict[int, Run] = {}
        self.deadlines: list[tuple[float, str]] = []
        self.orphan_done: list[tuple[str, Callable[[str], None]]] = []
        self.sweep = False
        self.stopping = False
        self.version = 0        # bumped by every change of the runs or of the fields the scanner's index reads
        self._dirty: set[str] | None = None   # run ids changed since the scanner's index last took them (None: all)

    def changed(self, run: Run | None = None) -> None:
        """(lock held) ``run`` was added or dropped, or a field the scanner's index reads changed
        (starting, leader_alive, pid, term_pending, kill_deadline, done_cbs, named_pgid, gone,
        memory_limit); without a run, any may have."""
        self.version += 1
        if run is None:
            self._dirty = None
        elif self._dirty is not None:
            self._dirty.add(run.run_id)

    def take_dirty(self) -> set[str] | None:
        """(lock held) The run ids changed since the last call (None: every run may have)."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def wake(self) -> None:
        """(lock held) Have the scanner look at the runs now (what changed is told by ``changed``)."""
        self.sweep = True
        self.cond.notify_all()

    def set_deadline(self, run: Run, at: float, term: bool) -> None:
        """(lock held) Kill ``run`` at ``at`` unless it is already due earlier; SIGTERM first."""
        self.changed(run)
        if term and not run.termed:
            run.term_pending = True
        if run.kill_deadline is None or at < run.kill_deadline:
            run.kill_deadline = at
            heapq.heappush(self.deadlines, (at, run.run_id))

    def next_deadline(self) -> float:
        """(lock held) The earliest pending kill sweep (inf when none); drops stale heap entries."""
        heap = self.deadlines
        while heap:
            at, run_id = heap[0]
            run = self.by_id.get(run_id)
            if run is not None and run.kill_deadline == at:
                return at
            heapq.heappop(heap)
        return float("inf")

    def live_sessions(self) -> tuple[dict[int, str], set[str], dict[int, str]]:
        """For a scan: (session id -> run id of runs whose leader lives, every known run id,
        process group -> run id of the groups those runs' pgid files name)."""
        with self.lock:
            live = [r for r in self.by_id.values() if r.leader_alive]
            return ({r.pid: r.run_id for r in live}, set(self.by_id),
                    {r.named_pgid: r.run_id for r in live if r.named_pgid is not None})

    def forget_failed(self, run: Run, previous: Run | None) -> None:
        """A launch that did not start: the key gets its previous run back."""
        with self.lock:
            self.changed(run)
            self.by_id.pop(run.run_id, None)
            if self.by_key.get(run.key) is run:
                if previous is not None:
                    self.by_key[run.key] = previous
                else:
                    del self.by_key[run.key]
