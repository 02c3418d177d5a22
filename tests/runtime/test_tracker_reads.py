"""Issue 16: a full scan reads a member's statm only when its stat text changed since the last read
(an idle process keeps its memory), or when its statm is ``_MEM_REFRESH`` full scans old; memory that
grows is seen at every scan. The fds go to the members' stat first: a statm fd is kept only while
there is room for every member's stat fd besides. Real processes, the real /proc."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest

from vkcmd.runtime.tracker import _MEM_REFRESH, _FD_RESERVE, Tracker

GROW = ("import time\nkept = []\nwhile True:\n    kept.append(bytearray(512 * 1024))\n"
        "    time.sleep(0.05)\n")


@pytest.fixture
def processes():
    started = [subprocess.Popen(["sleep", "60"], start_new_session=True),
               subprocess.Popen([sys.executable, "-c", GROW], start_new_session=True)]
    time.sleep(0.3)
    yield started
    for process in started:
        process.kill()
        process.wait()


def members(snap) -> dict[str, object]:
    return {run: procs[0] for run, procs in snap.members.items()}


def test_statm_is_read_when_the_stat_moved_or_when_it_is_old(processes):
    idle, grow = processes
    tracker = Tracker()
    live, known = {idle.pid: "idle", grow.pid: "grow"}, {"idle", "grow"}
    first = members(tracker.scan(live, known, full=True))
    assert first["idle"].anon_pages > 0 and first["grow"].anon_pages > 0     # every member read once
    idle_read, seen_grow, grow_rss = first["idle"].mem_scan, [first["grow"].anon_pages], first["grow"].rss_pages
    reads, grow_reads = [], 0
    for _ in range(2 * _MEM_REFRESH):
        time.sleep(0.15)
        now = members(tracker.scan(live, known, full=True))
        # its stat moved (its resident count is in it): its statm read (unless a loaded machine kept it waiting)
        assert now["grow"].mem_scan == tracker.full_scans or now["grow"].rss_pages == grow_rss
        grow_reads += now["grow"].mem_scan == tracker.full_scans
        grow_rss = now["grow"].rss_pages
        seen_grow.append(now["grow"].anon_pages)
        if now["idle"].mem_scan != idle_read:
            reads.append(tracker.full_scans)
            idle_read = now["idle"].mem_scan
        assert now["idle"].mem_scan == idle_read
    assert grow_reads >= _MEM_REFRESH
    assert seen_grow == sorted(seen_grow) and seen_grow[-1] > seen_grow[0] + 256  # 1 MiB+ more, in pages
    # the idle sleep's stat text never changed: its statm read again only when it was old
    assert reads and all(b - a == _MEM_REFRESH for a, b in zip(reads, reads[1:]))
    assert len(reads) <= 2


def test_the_fds_go_to_every_members_stat_before_any_statm(processes):
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    live, known = {p.pid: f"run-{p.pid}" for p in processes}, {f"run-{p.pid}" for p in processes}
    roomy, tight = Tracker(), Tracker(fd_share=3.5 / (soft - _FD_RESERVE))   # a budget of 3 fds
    figures = []
    for tracker, kept in ((roomy, 4), (tight, 2)):
        snap = tracker.scan(live, known, full=True)
        assert tracker.open_fds == kept
        assert all(p.stat_fd >= 0 for p in members(snap).values())
        figures.append({run: (p.start, p.rss_pages > 0, p.anon_pages > 0) for run, p in members(snap).items()})
    assert figures[0] == figures[1]
    for process in processes:
        process.kill()
        process.wait()
    gone = tight.scan({}, known, full=True)
    assert not gone.members and tight.open_fds == 0
