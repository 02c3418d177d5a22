"""Restarts of vkcmd: runs still going are re-adopted, runs that ended meanwhile report their exit,
a reused pid is never taken for a run, and nothing starts twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from vkcmd.runtime import START_ERROR, STATUS_UNKNOWN
from vkcmd.runtime.process_stat import boot_id, read_stat

from .conftest import live, marked_processes

REPO = Path(__file__).resolve().parents[2]
# runs until the file "stop" appears in its directory, then exits with the given code
UNTIL_STOP = "echo ready; while [ ! -e stop ]; do sleep 0.02; done; exit {code}"
ESCAPE_AND_WAIT = "(setsid sh -c 'exec sleep 1000' &); echo ready; exec sleep 1000"


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def session_leader(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat.sid == pid


def stop_file(h, key):
    (h.cdir(key.replace("/", "_")) / "stop").touch()


def check_restart(h2, before: dict, ended_key: str, running_key: str):
    recovered = {r.key: r for r in h2.rt.recover()}
    assert set(recovered) == {ended_key, running_key}
    ended, running = recovered[ended_key], recovered[running_key]
    assert not ended.running and ended.exit.exit_code == 5 and ended.exit.reason == "Error"
    assert running.running and running.info.pid == before[running_key]["pid"]
    assert running.info.run_id == before[running_key]["run_id"]
    assert h2.rt.runs() == {running_key: running.info}
    # idempotent: a second recover adopts nothing twice
    again = {r.key: r for r in h2.rt.recover()}
    assert again[running_key].running and again[ended_key].exit == ended.exit
    assert marked_processes({running.info.run_id})         # still one run, not restarted
    leaders = [p for p in marked_processes({running.info.run_id}) if session_leader(p)]
    assert leaders == [running.info.pid]
    # its later exit comes through on_exit, once, with the right code
    stop_file(h2, running_key)
    report = h2.exit()
    assert (report.key, report.exit_code, report.run_id) == (running_key, 7, running.info.run_id)
    time.sleep(0.2)
    assert h2.exits.empty()


def test_recover_in_the_same_process(runtimes):
    h1 = runtimes()
    a = h1.sh("p/a", UNTIL_STOP.format(code=7))
    b = h1.sh("p/b", UNTIL_STOP.format(code=5))
    h1.wait_out("p/a", "ready")
    h1.wait_out("p/b", "ready")
    h1.rt.stop()                                          # vkcmd "restarts": runs keep running
    stop_file(h1, "p/b")
    wait_for(lambda: (h1.state / "runs" / f"{b.run_id}.exit").exists(), what="b's exit record")
    h2 = runtimes(state=h1.state)
    before = {"p/a": {"pid": a.pid, "run_id": a.run_id}, "p/b": {"pid": b.pid, "run_id": b.run_id}}
    check_restart(h2, before, "p/b", "p/a")


VKCMD = """
import json, os, sys, time
from vkcmd.runtime import Runtime, LaunchSpec
state, base = sys.argv[1], sys.argv[2]
rt = Runtime(state, on_exit=lambda r: None, scan_interval=0.1)
rt.start()
out = {}
for key, script in json.loads(sys.argv[3]).items():
    d = os.path.join(base, "c", key.replace("/", "_"))
    os.makedirs(d, exist_ok=True)
    info = rt.launch(LaunchSpec(key, ["sh", "-c", script], {"PATH": os.environ["PATH"]}, d, d))
    out[key] = {"pid": info.pid, "run_id": info.run_id}
print(json.dumps(out), flush=True)
time.sleep(60)
"""


def test_recover_after_kill_9(runtimes, tmp_path):
    """vkcmd killed with SIGKILL: its runs' leaders are orphans (not our children) when it comes back."""
    state = tmp_path / "state"
    scripts = {"p/a": UNTIL_STOP.format(code=7),
               "p/b": "(setsid sh -c 'echo $$ > escaped; exec sleep 1000' &); " + UNTIL_STOP.format(code=5)}
    vk = subprocess.Popen([sys.executable, "-c", VKCMD, str(state), str(tmp_path), json.dumps(scripts)],
                          stdout=subprocess.PIPE, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        before = json.loads(vk.stdout.readline())
        escaped = tmp_path / "c" / "p_b" / "escaped"
        wait_for(lambda: escaped.exists() and escaped.read_text().strip(), what="escapee")
        escapee = int(escaped.read_text())
    finally:
        vk.kill()
        vk.wait()
    assert read_stat(before["p/a"]["pid"]).ppid != os.getpid()   # an orphan now, not our child
    h2 = runtimes(state=state)                            # (its leak check reads the state dir)
    (tmp_path / "c" / "p_b" / "stop").touch()
    wait_for(lambda: (state / "runs" / f"{before['p/b']['run_id']}.exit").exists(), what="b's exit record")
    # the monitor writes its exit record, then ends: until it has, a recover rightly adopts b as running
    wait_for(lambda: not live(before["p/b"]["pid"]), what="b's leader to end")
    # its monitor (a child subreaper, the escapee's parent now) killed it as the run ended, vkcmd or not
    wait_for(lambda: not live(escapee), what="the ended run's escapee to be killed")
    check_restart(h2, before, "p/b", "p/a")


def test_a_reused_pid_is_not_adopted(rt, tmp_path):
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        start = read_stat(stranger.pid).start
        runs = rt.state / "runs"
        for run_id, key, claimed_start, boot in [("0000000000000001", "p/wrong-start", start + 1, boot_id()),
                                                  ("0000000000000002", "p/wrong-boot", start, "another-boot")]:
            record = {"key": key, "run_id": run_id, "container_dir": str(tmp_path), "started_at": 1.0,
                      "pid": stranger.pid, "leader_start": claimed_start, "boot_id": boot}
            (runs / f"{run_id}.json").write_text(json.dumps(record))
        recovered = {r.key: r for r in rt.rt.recover()}
        for key in ("p/wrong-start", "p/wrong-boot"):
            assert not recovered[key].running
            assert (recovered[key].exit.exit_code, recovered[key].exit.reason) == (137, STATUS_UNKNOWN)
        assert rt.rt.runs() == {}
        time.sleep(0.3)                                   # a few scans: nothing touches the stranger
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_record_without_a_process_is_a_start_error(rt, tmp_path):
    record = {"key": "p/c", "run_id": "00000000000000aa", "container_dir": str(tmp_path), "started_at": 1.0}
    (rt.state / "runs" / "00000000000000aa.json").write_text(json.dumps(record))
    [r] = rt.rt.recover()
    assert (r.key, r.running, r.exit.exit_code, r.exit.reason) == ("p/c", False, 128, START_ERROR)


def test_a_run_that_was_never_recorded_is_killed(runtimes):
    """vkcmd died between the spawn and the run's record: nobody was told the run started, so it is
    not adopted; its marker says it is one of ours, so it is killed (no duplicate when it is
    launched again)."""
    h1 = runtimes()
    info = h1.sh("p/c", ESCAPE_AND_WAIT)
    h1.wait_out("p/c", "ready")
    h1.rt.stop()
    (h1.state / "runs" / f"{info.run_id}.json").unlink()
    wait_for(lambda: len(marked_processes({info.run_id})) >= 3, what="monitor, sleep, escaped sleep")
    h2 = runtimes(state=h1.state)
    assert h2.rt.recover() == []
    wait_for(lambda: not marked_processes({info.run_id}), what="the unrecorded run to be killed")
    assert h2.exits.empty()
