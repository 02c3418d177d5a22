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
