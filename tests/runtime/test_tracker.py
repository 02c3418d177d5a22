"""The tracker's kept fds on members' stat and statm: read again with pread, closed when the process
goes, and none beyond the budget (members are then read with open/read/close, the same values)."""

from __future__ import annotations

import subprocess

import pytest

from vkcmd.runtime.tracker import Tracker


@pytest.fixture
def sleeper():
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize("share, kept", [(0.5, 2), (0.0, 0)])
def test_members_read_through_kept_fds_closed_when_gone(sleeper, share, kept):
    tracker = Tracker(fd_share=share)
    live = {sleeper.pid: "run"}
    snap = tracker.scan(live, {"run"}, full=True)
    [member] = snap.members["run"]
    assert member.pid == sleeper.pid and member.rss_pages > 0 and member.anon_pages >= 0
    assert tracker.open_fds == kept and tracker.full_scans == 1
    again = tracker.scan(live, {"run"}, full=True)
    assert again.members["run"][0].start == member.start and tracker.open_fds == kept
    sleeper.kill()
    sleeper.wait()
    gone = tracker.scan({}, {"run"}, full=True)
    assert not gone.members.get("run") and [p.pid for p in gone.vanished["run"]] == [sleeper.pid]
    assert tracker.open_fds == 0


def test_forget_all_closes_every_kept_fd(sleeper):
    tracker = Tracker()
    tracker.scan({sleeper.pid: "run"}, {"run"}, full=True)
    assert tracker.open_fds == 2
    tracker.forget_all()
    assert tracker.open_fds == 0
