"""A rewritten pgid file (issue 15): JIRIAF scripts name another process group there, started
elsewhere, so that monitoring follows it. That group is the container's in ``usage()`` and ends with
it; never init's, vkcmd's own, another run's, or one of another user."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import time

import pytest

from vkcmd.runtime.inotify import EVENT, Inotify

from .conftest import SCAN, live

# waits until the test has named the group in its pgid file, then runs on
RUN = "echo ready; exec sleep 1000"


def outside_group(user: int | None = None) -> int:
    """A process group started outside any run, whose leader is gone (as a workload started by
    another runtime): returns the pid of its one process, a sleep."""
    argv = ["setsid", "sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, user=user, timeout=10)
    return int(out.stdout)


def until(predicate, what: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_group_named_in_the_pgid_file_is_the_containers_and_ends_with_it(rt):
    rt.sh("p/c", RUN)
    rt.wait_out("p/c", "ready")
    workload = outside_group()
    try:
        pgid = os.getpgid(workload)
        assert pgid != rt.launched[-1].pid
        assert workload not in rt.rt.processes("p/c")
        (rt.cdir("p_c") / "pgid").write_text(f"{pgid}\n")       # what the JIRIAF script does
        until(lambda: workload in rt.rt.processes("p/c"), "the named group was not followed")
        assert rt.rt.refresh()["p/c"].processes == 3             # monitor, sleep, the workload
        done = queue.Queue()
        rt.rt.terminate("p/c", 0.3, done.put)
        assert done.get(timeout=10) == "p/c"
        until(lambda: not live(workload), "the named group outlived its container")
    finally:
        kill(workload)


@pytest.mark.parametrize("named", ["init", "vkcmd", "another run", "junk"])
def test_groups_a_pgid_file_may_not_name(runtimes, named):
    h = runtimes()
    h.sh("p/c", RUN)
    h.sh("p/other", RUN)
    h.wait_out("p/c", "ready")
    other = h.launched[-1].pid
    pgid = {"init": "1", "vkcmd": str(os.getpgrp()), "another run": str(other), "junk": "-5 x"}[named]
    (h.cdir("p_c") / "pgid").write_text(pgid + "\n")
    time.sleep(0.5)                                             # several scans
    assert len(h.rt.processes("p/c")) == 2
    assert other in h.rt.processes("p/other") and other not in h.rt.processes("p/c")
    h.rt.terminate("p/c", 0.3)
    assert h.exit().key == "p/c"
    time.sleep(0.3)
    assert live(other) and h.rt.runs().keys() == {"p/other"}   # the other run (and we) live on
    h.rt.terminate("p/other", 0)
    assert h.exit().key == "p/other"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a process as another user")
def test_a_named_group_of_another_user_is_not_followed(rt):
    rt.sh("p/c", RUN)
    rt.wait_out("p/c", "ready")
    stranger = outside_group(user=65534)
    try:
        (rt.cdir("p_c") / "pgid").write_text(f"{os.getpgid(stranger)}\n")
        time.sleep(0.5)
        assert stranger not in rt.rt.processes("p/c")
        done = queue.Queue()
        rt.rt.terminate("p/c", 0.3, done.put)
        assert done.get(timeout=10) == "p/c"
        assert live(stranger)
    finally:
        kill(stranger)


IN_OPEN = 0x00000020


def opened_pgid_files(watcher: Inotify, names: dict[int, str]) -> set[str]:
    """The container dirs whose pgid file was opened since the last call (by anyone)."""
    seen = set()
    for data in watcher.read():
        offset = 0
        while offset < len(data):
            wd, mask, _cookie, length = EVENT.unpack_from(data, offset)
            name = data[offset + EVENT.size: offset + EVENT.size + length].rstrip(b"\0")
            offset += EVENT.size + length
            if mask & IN_OPEN and name == b"pgid":
                seen.add(names[wd])
    return seen


def test_pgid_files_are_read_when_rewritten_not_at_every_scan(rt, caplog):
    """Issue 16: at thousands of pods, re-reading every pgid file at every scan was a third of an
    idle node's CPU. A file is read when its run is new and when it is written, not per scan; a
    rewrite is still followed (and one renamed into place too)."""
    keys = [f"p/c{i}" for i in range(3)]
    watcher = Inotify()
    try:
        names = {watcher.add_watch(str(rt.cdir(key.replace("/", "_"))), IN_OPEN): key for key in keys}
        for key in keys:
            rt.sh(key, RUN)
        for key in keys:
            rt.wait_out(key, "ready")
        first: set[str] = set()                                  # each read once: the run is new
        until(lambda: first.update(opened_pgid_files(watcher, names)) or first == set(keys),
              "a new run's pgid file was never read", timeout=10)
        time.sleep(SCAN * 3)
        opened_pgid_files(watcher, names)
        time.sleep(SCAN * 15)                                    # a dozen periodic scans
        assert opened_pgid_files(watcher, names) == set(), "pgid files read again at idle scans"
        workload = outside_group()
        try:
            pgid = os.getpgid(workload)
            staged = rt.cdir("p_c1") / "pgid.new"
            staged.write_text(f"{pgid}\n")
            staged.rename(rt.cdir("p_c1") / "pgid")               # replaced atomically, as write_pgid does
            until(lambda: workload in rt.rt.processes("p/c1"), "the renamed pgid file was not followed")
            assert opened_pgid_files(watcher, names) == {"p/c1"}
        finally:
            kill(workload)
    finally:
        watcher.close()
        for key in keys:
            rt.rt.terminate(key, 0)
        assert {rt.exit().key for _ in keys} == set(keys)
        time.sleep(SCAN * 5)                                     # scans after the ends drop the watches
        assert not [r for r in caplog.records if r.levelname == "ERROR"], "a scan failed"
