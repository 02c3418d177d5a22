"""The runtime's record of one run in memory (internal to ``vkcmd.runtime``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from vkcmd.runtime.reaper import ExitReport
from vkcmd.runtime.spawn import RunInfo
from vkcmd.runtime.state import RunRecord
from vkcmd.runtime.usage import CpuAccount


@dataclass(eq=False)
class Run:
    """One run as the Runtime tracks it: fields change under the Runtime's lock only."""
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
