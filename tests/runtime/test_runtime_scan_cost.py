"""What the scanner costs while nothing happens, and that skipping work never loses a process.

An idle periodic scan lists /proc only every few seconds (``_LIST_BUDGET``, ``_LIST_INTERVAL_MAX``)
unless something may have joined a run that no later listing would still attribute: these tests
make the listing "costly" (a tiny budget) and check both sides - no listing per tick while nothing
changes, even with other processes coming and going on the machine; one per tick while vkcmd has
a child that leads no run (an exec); and an escaped process still dies with its run.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import time

import pytest

from vkcmd.runtime import process_scan

from .conftest import live
from .test_runtime_terminate import ESCAPE, escaped_pid


@pytest.fixture
def costly_listing(monkeypatch):
    monkeypatch.setattr(process_scan, "_LIST_BUDGET", 1e-9)
    monkeypatch.setattr(process_scan, "_LIST_INTERVAL_MAX", 60.0)


@pytest.fixture
def churn():
    """Processes coming and going elsewhere on the machine (not vkcmd's children): /proc/loadavg's
    last pid moves at every tick, so its shortcut never applies."""
    out = subprocess.run(["sh", "-c", "(while :; do /bin/true; sleep 0.01; done) >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    pid = int(out.stdout)
    yield pid
    os.kill(pid, signal.SIGKILL)


def wait_scans(rt, n: int, timeout: float = 10.0) -> None:
    target = rt.rt.scans + n
    deadline = time.monotonic() + timeout
    while rt.rt.scans < target:
        assert time.monotonic() < deadline, "the scanner does not tick"
        time.sleep(0.01)


# Run in a fresh interpreter: "vkcmd has a child that leads no run" is judged over the whole process,
# and pytest's process has children of its own during a full run (the e2e suites' control plane).
_IDLE_LISTINGS = """
import json, queue, subprocess, sys, tempfile
from pathlib import Path
from vkcmd.runtime import process_scan
from tests.runtime.conftest import Harnesses, _teardown
from tests.runtime.test_runtime_scan_cost import wait_scans
process_scan._LIST_BUDGET, process_scan._LIST_INTERVAL_MAX = 1e-9, 60.0
hs = Harnesses(Path(sys.argv[1]))
try:
    rt = hs(scan_interval=0.05)
    for i in range(3):
        rt.launch(f"p{i}/c", ["sleep", "1000"])
    wait_scans(rt, 5)
    tracker = rt.rt._tracker
    before = tracker.listings
    wait_scans(rt, 15)
    idle = tracker.listings - before
    child = subprocess.Popen(["sleep", "30"])        # as an exec or a probe would be: vkcmd's child
    try:
        wait_scans(rt, 2)
        before = tracker.listings
        wait_scans(rt, 10)
        with_child = tracker.listings - before
    finally:
        child.kill()
        child.wait()
    done = queue.Queue()
    for i in range(3):
        rt.rt.terminate(f"p{i}/c", 5, done.put)
    for _ in range(3):
        done.get(timeout=10)
    print(json.dumps({"idle": idle, "with_child": with_child}))
finally:
    _teardown(hs)
"""


def test_idle_ticks_do_not_list_proc_until_vkcmd_has_a_child_outside_its_runs(tmp_path, churn):
    import json
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _IDLE_LISTINGS, str(tmp_path)], cwd=repo, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["idle"] <= 1, "idle ticks listed /proc"
    assert counts["with_child"] >= 8, "a child outside the runs did not make the ticks list"


def test_an_escapee_born_while_ticks_skip_the_listing_dies_with_its_run(runtimes, costly_listing, churn):
    rt = runtimes(scan_interval=0.05)
    rt.sh("p/c", ESCAPE + "echo ready; exec sleep 1000")
    rt.wait_out("p/c", "ready")
    escapee = escaped_pid(rt, "p/c")
    assert os.getsid(escapee) != rt.launched[0].pid
    wait_scans(rt, 5)
    done = queue.Queue()
    rt.rt.terminate("p/c", 5, done.put)
    assert rt.exit().exit_code == 143
    assert done.get(timeout=10) == "p/c"
    assert not live(escapee)


def test_forgetting_an_ended_run_drops_its_state_at_once(rt):
    rt.launch("p/c", ["true"])
    assert rt.exit().exit_code == 0
    done = queue.Queue()
    rt.rt.terminate("p/c", 30, done.put)            # done once a scan found nothing left of it
    assert done.get(timeout=5) == "p/c"
    rt.rt.forget("p/c")
    assert list((rt.state / "runs").iterdir()) == []  # no scan needed: nothing was left of it
