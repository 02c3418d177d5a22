"""CPU and memory usage of runs (from tracker snapshots) and of the host (psutil).

Cumulative CPU of a run is the CPU of its live processes (each with the CPU of the children it
reaped) plus that of members that ended without a member reaping them (double-forked daemons reaped
by init), clamped so that it never decreases, and never exactly 0: metrics-server skips a container
whose cumulative CPU or working set is 0, and one whose CPU decreased.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import psutil

from vkcmd.runtime.process_stat import CLK_TCK, PAGE_SIZE
from vkcmd.runtime.tracker import Proc

#: The least cumulative CPU a run reports (seconds): never 0.
CPU_FLOOR_SECONDS = 1e-6


@dataclass(slots=True)
class Usage:
    """One run's usage at ``timestamp`` (wall time of the scan it comes from). Made per run and full
    scan (thousands): slotted, not frozen (several times cheaper to make); never change one."""
    cpu_seconds: float                 # cumulative, monotonic, > 0
    memory_rss_bytes: int              # sum of the members' resident sets (shared pages counted in each)
    memory_working_set_bytes: int      # sum of anonymous resident memory (RSS minus file-backed/shared), > 0
    processes: int
    started_at: float
    timestamp: float

    def same_figures(self, other: Usage | None) -> bool:
        """The same usage as ``other`` (of a later or earlier scan), whatever the scans' times."""
        return other is not None and (self.cpu_seconds == other.cpu_seconds
                                      and self.memory_working_set_bytes == other.memory_working_set_bytes
                                      and self.memory_rss_bytes == other.memory_rss_bytes
                                      and self.processes == other.processes and self.started_at == other.started_at)


@dataclass(frozen=True)
class NodeUsage:
    cpu_seconds: float                 # host CPU time not idle (all CPUs), cumulative
    memory_working_set_bytes: int      # total - available
    memory_total_bytes: int
    timestamp: float
    memory_free_bytes: int = 0
    memory_available_bytes: int = 0


class CpuAccount:
    """Cumulative CPU of one run, fed with every snapshot."""

    __slots__ = ("lost_ticks", "seconds")

    def __init__(self):
        self.lost_ticks = 0
        self.seconds = 0.0

    def update(self, members: Collection[Proc], vanished: Collection[Proc]) -> float:
        if vanished:
            pids = {p.pid for p in members}
            for p in vanished:
                if p.ppid not in pids:        # nobody in the run reaped it: its CPU went with it
                    self.lost_ticks += p.cpu_ticks
        live = sum([p.cpu_ticks for p in members])
        self.seconds = max(self.seconds, (live + self.lost_ticks) / CLK_TCK)
        return self.value

    def add_final(self, seconds: float) -> None:
        """The leader's own rusage at its end (its CPU and that of all it reaped)."""
        self.seconds = max(self.seconds, self.lost_ticks / CLK_TCK + seconds)

    @property
    def value(self) -> float:
        return max(self.seconds, CPU_FLOOR_SECONDS)


def memory_of(members: Iterable[Proc]) -> tuple[int, int]:
    """(RSS bytes, working set bytes); the working set is at least a page when there is a process."""
    members = members if isinstance(members, (list, tuple)) else list(members)
    if len(members) == 1:
        p = members[0]
        return p.rss_pages * PAGE_SIZE, max(p.anon_pages, 1) * PAGE_SIZE
    rss = sum([p.rss_pages for p in members])
    anon = sum([p.anon_pages for p in members])
    return rss * PAGE_SIZE, max(anon, 1 if members else 0) * PAGE_SIZE


def node_usage() -> NodeUsage:
    t = psutil.cpu_times()
    # Linux counts guest time inside user time; idle, iowait and steal are not this host's work
    busy = sum(t) - sum(getattr(t, name, 0.0) for name in ("idle", "iowait", "steal", "guest", "guest_nice"))
    vm = psutil.virtual_memory()
    return NodeUsage(cpu_seconds=max(busy, CPU_FLOOR_SECONDS),
                     memory_working_set_bytes=max(vm.total - vm.available, PAGE_SIZE),
                     memory_total_bytes=vm.total, timestamp=time.time(), memory_free_bytes=vm.free,
                     memory_available_bytes=vm.available)
