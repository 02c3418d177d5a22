"""Ending runs: SIGTERM, grace, SIGSTOP + SIGKILL of everything, escaped processes, leftovers."""

from __future__ import annotations

import os
import queue
import signal
import time

import pytest

from vkcmd.runtime import COMPLETED, ERROR

from .conftest import live

# A command that writes its pid, leaves its session and its parent (double fork + setsid), and sleeps.
ESCAPE = "(setsid sh -c 'echo $$ > escaped; exec sleep 1000' &) ; "


def escaped_pid(rt, key: str, timeout: float = 5.0) -> int:
    path = rt.cdir(key.replace("/", "_")) / "escaped"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            pid = int(text)
            while time.monotonic() < deadline:            # until it has exec'd sleep
                try:
                    if open(f"/proc/{pid}/comm").read().strip() == "sleep":
                        return pid
                except OSError:
                    break
                time.sleep(0.01)
        time.sleep(0.01)
    raise AssertionError("the escapee did not start")


def test_terminate_with_grace_exits_cleanly(rt):
    rt.sh("p/c", "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done")
    rt.wait_out("p/c", "ready")
    done = queue.Queue()
    t0 = time.monotonic()
    rt.rt.terminate("p/c", 10, done.put)
    report = rt.exit()
    assert (report.exit_code, report.reason) == (0, COMPLETED)
    assert done.get(timeout=5) == "p/c"
    assert time.monotonic() - t0 < 3
    assert rt.out("p/c").endswith("bye\n")


def test_terminate_kills_what_ignores_term_after_grace(rt):
    info = rt.sh("p/c", "trap '' TERM; echo ready; while :; do sleep 0.05; done")
    rt.wait_out("p/c", "ready")
    done = queue.Queue()
    t0 = time.monotonic()
    rt.rt.terminate("p/c", 0.5, done.put)
    report = rt.exit()
    elapsed = time.monotonic() - t0
    assert (report.exit_code, report.signal, report.reason) == (137, 9, ERROR)
    assert 0.45 < elapsed < 3
    assert done.get(timeout=5) == "p/c"
    assert not live(info.pid, info.leader_start)


def test_second_terminate_shortens_the_grace(rt):
    rt.sh("p/c", "trap '' TERM; echo ready; while :; do sleep 0.05; done")
    rt.wait_out("p/c", "ready")
    t0 = time.monotonic()
    rt.rt.terminate("p/c", 60)
    time.sleep(0.1)
    rt.rt.terminate("p/c", 0.2)
    assert rt.exit().exit_code == 137
    assert time.monotonic() - t0 < 3


def test_term_is_sent_once(rt):
    rt.sh("p/c", "trap 'echo term' TERM; echo ready; while :; do sleep 0.05; done")
    rt.wait_out("p/c", "ready")
    rt.rt.terminate("p/c", 0.6)
    rt.rt.terminate("p/c", 0.5)
    assert rt.exit().exit_code == 137
    assert rt.out("p/c").count("term") == 1


def test_grace_zero_kills_at_once(rt):
    rt.launch("p/c", ["sleep", "30"])
    t0 = time.monotonic()
    rt.rt.terminate("p/c", 0)
    assert rt.exit().exit_code == 137
    assert time.monotonic() - t0 < 1


def test_escaped_double_fork_setsid_is_tracked_and_killed(rt):
    info = rt.sh("p/c", ESCAPE + "echo ready; exec sleep 1000")
    rt.wait_out("p/c", "ready")
    escapee = escaped_pid(rt, "p/c")
    import os
    assert os.getsid(escapee) != info.pid                 # it left the session
    deadline = time.monotonic() + 3
    while escapee not in rt.rt.processes("p/c"):
        assert time.monotonic() < deadline, "escapee not attributed"
        time.sleep(0.02)
    assert rt.rt.refresh()["p/c"].processes == len(rt.rt.processes("p/c")) >= 3
    done = queue.Queue()
    rt.rt.terminate("p/c", 0.3, done.put)
    assert rt.exit().exit_code == 143                     # sleep takes TERM
    assert done.get(timeout=5) == "p/c"
    assert not live(escapee)


def test_escapee_that_ignores_term_is_killed(rt):
    rt.sh("p/c", "(setsid sh -c 'trap \"\" TERM; echo $$ > escaped; exec sleep 1000' &); echo ready; exec sleep 1000")
    rt.wait_out("p/c", "ready")
    escapee = escaped_pid(rt, "p/c")
    done = queue.Queue()
    rt.rt.terminate("p/c", 0.3, done.put)
    assert done.get(timeout=5) == "p/c"
    assert not live(escapee)


def test_leftovers_die_with_the_leader(rt):
    """As in a container whose init ended: what the command left behind is killed."""
    rt.sh("p/c", ESCAPE + "sleep 1000 & echo $! > bg; while [ ! -s escaped ]; do sleep 0.01; done")
    assert rt.exit().exit_code == 0
    bg = int((rt.cdir("p_c") / "bg").read_text())
    escapee = int((rt.cdir("p_c") / "escaped").read_text())
    deadline = time.monotonic() + 3
    while live(bg) or live(escapee):
        assert time.monotonic() < deadline, f"left running: bg={live(bg)} escapee={live(escapee)}"
        time.sleep(0.02)


def test_terminate_of_an_unknown_key_is_done_at_once(rt):
    done = queue.Queue()
    rt.rt.terminate("nobody/c", 30, done.put)
    assert done.get(timeout=2) == "nobody/c"


def test_terminate_after_exit_is_done(rt):
    rt.sh("p/c", "exit 2")
    assert rt.exit().exit_code == 2
    done = queue.Queue()
    rt.rt.terminate("p/c", 30, done.put)
    assert done.get(timeout=2) == "p/c"


def test_forget_kills_silently_and_drops_state(rt):
    info = rt.launch("p/c", ["sleep", "30"])
    rt.launch("p/d", ["true"])
    assert rt.exit().key == "p/d"
    rt.rt.forget("p/d")
    rt.rt.forget("p/c")
    deadline = time.monotonic() + 3
    while list((rt.state / "runs").iterdir()):
        assert time.monotonic() < deadline, list((rt.state / "runs").iterdir())
        time.sleep(0.02)
    assert not live(info.pid, info.leader_start)
    assert rt.exits.empty()                               # no report for a forgotten run
    assert rt.rt.runs() == {}


def test_a_signal_to_the_monitor_alone_does_not_end_the_run(rt):
    import os
    import signal
    info = rt.launch("p/c", ["sleep", "30"])
    time.sleep(0.1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(info.pid, sig)
    time.sleep(0.2)
    assert rt.exits.empty() and live(info.pid, info.leader_start)
    rt.rt.kill_now("p/c")
    assert rt.exit().exit_code == 137


def test_a_killed_monitor_ends_the_run(rt):
    """The monitor dies without recording (SIGKILL): vkcmd reports what the wait status says, and
    the command it left behind is killed with the group."""
    import os
    import signal
    rt.sh("p/c", "echo $$ > cmd; exec sleep 30")
    cmd_file = rt.cdir("p_c") / "cmd"
    deadline = time.monotonic() + 5
    while not (cmd_file.exists() and cmd_file.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    cmd = int(cmd_file.read_text())
    os.kill(rt.launched[-1].pid, signal.SIGKILL)
    report = rt.exit()
    assert (report.exit_code, report.signal, report.reason) == (137, 9, ERROR)
    assert "killed by signal 9" in report.message
    deadline = time.monotonic() + 2
    while live(cmd):
        assert time.monotonic() < deadline, "the command outlived its monitor"
        time.sleep(0.01)


def test_nothing_spins_after_a_run_ended_within_its_grace(rt):
    rt.sh("p/c", "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done")
    rt.wait_out("p/c", "ready")
    rt.rt.terminate("p/c", 0.3)
    assert rt.exit().exit_code == 0
    time.sleep(0.5)                                       # past the grace deadline
    before = rt.rt.scans
    time.sleep(1.0)
    # the scanner sleeps between its periodic scans (every 0.1 s: about 10 here; a spin, thousands)
    assert rt.rt.scans - before <= 30


def test_terminate_right_after_launch_reaches_the_command(rt):
    """A SIGTERM that lands while the monitor is still starting its command is not lost."""
    for attempt in range(20):
        key = f"p/early{attempt}"
        rt.launch(key, ["sleep", "30"])
        t0 = time.monotonic()
        rt.rt.terminate(key, 30)
        report = rt.exit(timeout=10)
        assert report.key == key
        assert time.monotonic() - t0 < 5, "the TERM was lost; the run waited for the grace period"
        assert report.exit_code == 143


# Drops its environment (no VKCMD_RUN marker), leaves the session, and its parent exits at once:
# nothing but parentage through the monitor (a child subreaper) ties the sleep to its run.
ENV_I_ESCAPE = "env -i setsid sh -c 'sleep 1000 & echo $! > escaped'; "


def read_ppid(pid: int) -> int:
    data = open(f"/proc/{pid}/stat", "rb").read()
    return int(data[data.rindex(b")") + 2:].split()[1])


def _reap_escapee(path) -> int | None:
    """Kill (the test must not leak) and return the escapee's pid if it is still alive."""
    pid = int(path.read_text()) if path.exists() and path.read_text().strip() else None
    if pid is not None and live(pid):
        os.kill(pid, signal.SIGKILL)
        return pid
    return None


@pytest.mark.parametrize("ending", ["terminate", "command exits"])
def test_env_i_setsid_orphan_made_before_any_scan_dies_with_its_run(runtimes, ending):
    h = runtimes(scan_interval=60.0)     # no periodic scan between the escape and the end
    escaped = h.cdir("p_c") / "escaped"
    tail = "echo ready; exec sleep 1000" if ending == "terminate" else "while [ ! -s escaped ]; do :; done"
    h.sh("p/c", ENV_I_ESCAPE + tail)
    try:
        deadline = time.monotonic() + 5
        while not (escaped.exists() and escaped.read_text().strip()):
            assert time.monotonic() < deadline, "the escapee did not start"
            time.sleep(0.01)
        escapee = int(escaped.read_text())
        if ending == "terminate":
            assert os.getsid(escapee) != h.launched[-1].pid and read_ppid(escapee) != 1
            done = queue.Queue()
            h.rt.terminate("p/c", 0.3, done.put)
            assert done.get(timeout=10) == "p/c"
        assert h.exit().exit_code in (0, 143)
        deadline = time.monotonic() + 3
        while live(escapee) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        survivor = _reap_escapee(escaped)
    assert survivor is None, f"the escapee {survivor} outlived its run"
