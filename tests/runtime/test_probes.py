"""Exec probes: exit status, output, environment and directory, timeouts that leave nothing behind."""

import os
import threading
import time

from vkcmd.runtime.probes import ProbeRunner, run_probe


def test_success_failure_and_output(tmp_path):
    ok = run_probe(["sh", "-c", "echo fine; pwd; echo $WHO"], {"PATH": os.environ["PATH"], "WHO": "me"},
                   str(tmp_path), 5)
    assert ok.ok and ok.output == f"fine\n{tmp_path}\nme\n"
    bad = run_probe(["sh", "-c", "echo nope >&2; exit 3"], {"PATH": os.environ["PATH"]}, str(tmp_path), 5)
    assert not bad.ok and bad.output == "nope\n"


def test_missing_command_fails_with_a_reason(tmp_path):
    result = run_probe(["/no/such/probe"], {}, str(tmp_path), 1)
    assert not result.ok and "/no/such/probe" in result.output


def test_timeout_kills_the_probe_and_its_children(tmp_path):
    marker = tmp_path / "child.pid"
    started = time.monotonic()
    result = run_probe(["sh", "-c", f"sleep 30 & echo $! > {marker}; wait"], {"PATH": os.environ["PATH"]},
                       str(tmp_path), 0.5)
    assert result.timed_out and not result.ok
    assert time.monotonic() - started < 5
    child = int(marker.read_text())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and os.path.exists(f"/proc/{child}"):
        state = open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            break
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{child}") or \
        open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"


def test_runner_calls_back_from_its_pool(tmp_path):
    runner = ProbeRunner(workers=2)
    done = threading.Event()
    results = []
    runner.submit(["true"], {"PATH": os.environ["PATH"]}, str(tmp_path), 1,
                  lambda r: (results.append(r), done.set()))
    assert done.wait(5)
    runner.stop()
    assert results[0].ok


def _alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_gone(pids, seconds=5):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


def _leaver(tmp_path, n, then="exit 0"):
    """A probe that leaves a child in its own session, holding the probe's output, for ever."""
    pidfile = tmp_path / f"left-{n}.pid"
    return ["sh", "-c", f"setsid sh -c 'echo $$ > {pidfile}; exec sleep infinity' & "
                        f"while [ ! -s {pidfile} ]; do sleep 0.01; done; {then}"], pidfile


def test_a_probe_that_leaves_a_setsid_child_returns_and_the_child_is_killed(tmp_path):
    argv, pidfile = _leaver(tmp_path, 0)
    started = time.monotonic()
    result = run_probe(argv, {"PATH": os.environ["PATH"]}, str(tmp_path), 10)
    assert result.ok and not result.timed_out
    assert time.monotonic() - started < 5  # done when its leader exits, not when the pipe closes
    assert _wait_gone([int(pidfile.read_text())]) == []


def test_probes_leaving_children_never_starve_the_pool_or_hang_stop(tmp_path):
    runner = ProbeRunner(workers=4)
    results, lock = [], threading.Lock()
    done = threading.Semaphore(0)

    def record(result):
        with lock:
            results.append(result)
        done.release()

    pidfiles = []
    try:
        for n in range(6):  # more than the pool has threads, some timing out, some not
            argv, pidfile = _leaver(tmp_path, n, then="exit 0" if n % 2 else "sleep 30")
            pidfiles.append(pidfile)
            runner.submit(argv, {"PATH": os.environ["PATH"]}, str(tmp_path), 1, record)
        normal = threading.Event()
        runner.submit(["true"], {"PATH": os.environ["PATH"]}, str(tmp_path), 1, lambda r: normal.set())
        assert normal.wait(15), "a normal probe did not run after probes that left children"
        for _ in range(6):
            assert done.acquire(timeout=15)
        # one more that would hang, then stop: it returns promptly and kills what is running
        argv, pidfile = _leaver(tmp_path, 9, then="sleep 30")
        pidfiles.append(pidfile)
        runner.submit(argv, {"PATH": os.environ["PATH"]}, str(tmp_path), 60, record)
        deadline = time.monotonic() + 5
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stopper = threading.Thread(target=runner.stop, name="test-stop")
        started = time.monotonic()
        stopper.start()
        stopper.join(10)
    assert not stopper.is_alive(), "ProbeRunner.stop hung"
    assert time.monotonic() - started < 5
    left = [int(p.read_text()) for p in pidfiles if p.exists() and p.read_text().strip()]
    assert len(left) == 7
    assert _wait_gone(left) == []
    assert [r.timed_out for r in results[:6]].count(True) == 3
