"""The demo's processes: the marker every one of them carries, and stopping what a killed run left.

Everything ``tools/demo`` starts carries ``VKCMD_DEMO=<scratch dir>`` in its environment (pods too:
they inherit vkcmd's). Reading /proc for that marker is how leftovers are found, by pid, never by name.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from tools.procs import alive, cmdline_of, processes_with

MARKER = "VKCMD_DEMO"


def marked_processes(scratch: Path) -> list[int]:
    """Live processes (not this one) whose environment carries this demo's marker."""
    return processes_with({MARKER: str(scratch)})


def signal_pid(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` is alive; return those still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left


def stop_leftovers(scratch: Path) -> int:
    """Stop what an earlier run with the same scratch dir left behind (it was killed hard).

    vkcmd first (SIGTERM, it drains while kubelite still answers), then kubelite, then anything
    else carrying the marker (pod processes of a vkcmd that was itself killed). Returns how many.
    """
    found = marked_processes(scratch)
    if not found:
        return 0

    def by(module: str) -> list[int]:
        return [p for p in found if module in cmdline_of(p)]

    for group in (by("vkcmd"), by("tools.kubelite")):
        for pid in group:
            signal_pid(pid, signal.SIGTERM)
        for pid in wait_gone(group, 20):
            signal_pid(pid, signal.SIGKILL)
    rest = marked_processes(scratch)
    for pid in rest:
        signal_pid(pid, signal.SIGKILL)
    wait_gone(rest, 5)
    return len(found)

