"""Memory limits and usage: RSS over the limit -> OOMKilled 137; CPU seconds monotonic and > 0."""

from __future__ import annotations

import os
import time

from vkcmd.runtime import OOM_KILLED
from vkcmd.runtime.spawn import nice_level

from .conftest import PYTHON

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def test_memory_limit_kills_with_oomkilled(rt):
    rt.launch("p/c", [PYTHON, "-c", "import time; x = b'x' * (200 << 20); print('big', flush=True); time.sleep(60)"],
              memory_limit_bytes=50 << 20)
    t0 = time.monotonic()
    report = rt.exit(timeout=15)
    assert (report.exit_code, report.reason, report.signal) == (137, OOM_KILLED, 9)
    assert "limit" in report.message
    assert time.monotonic() - t0 < 10


def test_under_the_memory_limit_runs_on(rt):
    rt.launch("p/c", [PYTHON, "-c", "x = b'x' * (20 << 20); import time; time.sleep(0.6)"],
              memory_limit_bytes=200 << 20)
    assert rt.exit().exit_code == 0


def test_usage_of_a_running_run(rt):
    info = rt.sh("p/c", "sleep 30 & sleep 30 & echo ready; wait")
    rt.wait_out("p/c", "ready")
    usage = rt.rt.refresh()["p/c"]
    assert usage.processes == 4                          # monitor, sh, two sleeps
    assert usage.cpu_seconds > 0                         # never 0, even for an idle run
    assert usage.memory_rss_bytes > usage.memory_working_set_bytes > 0
    assert usage.started_at == info.started_at
    assert rt.rt.usage()["p/c"] is not None
    node = rt.rt.node_usage()
    assert node.cpu_seconds > 0 and 0 < node.memory_working_set_bytes <= node.memory_total_bytes
    rt.rt.kill_now("p/c")
    rt.exit()
    assert "p/c" not in rt.rt.refresh()


def test_cpu_seconds_monotonic_while_children_that_burned_cpu_exit(rt):
    # a child reaped by the run's shell, then an escaped one reaped by init
    script = (f"{PYTHON} -c '{BURN.format(s=0.3)}'; echo first; "
              f"(setsid {PYTHON} -c '{BURN.format(s=0.3)}' &); sleep 0.05; echo second; sleep 30")
    rt.sh("p/c", script)
    samples = []
    deadline = time.monotonic() + 10
    seen_second_end = None
    while time.monotonic() < deadline:
        samples.append(rt.rt.refresh()["p/c"].cpu_seconds)
        out = rt.out("p/c")
        if "second" in out and len(rt.rt.processes("p/c")) == 3:     # sh, sleep 30, its monitor
            seen_second_end = seen_second_end or time.monotonic()
            if time.monotonic() - seen_second_end > 0.2:
                break
        time.sleep(0.02)
    assert seen_second_end, rt.out("p/c")
    assert all(b >= a for a, b in zip(samples, samples[1:])), samples
    assert samples[0] > 0
    # both burners' CPU is still counted after they ended (ticks are 10 ms; be generous)
    assert samples[-1] >= 0.45, samples
    rt.rt.kill_now("p/c")
    rt.exit()


def test_cpu_limit_below_the_host_runs_nicer(rt):
    # field 19 of /proc/<pid>/stat is the nice value
    rt.sh("p/small", "cut -d' ' -f19 /proc/$$/stat", cpu_limit_cores=0.1)
    rt.sh("p/big", "cut -d' ' -f19 /proc/$$/stat", cpu_limit_cores=float(os.cpu_count()))
    rt.sh("p/none", "cut -d' ' -f19 /proc/$$/stat")
    for _ in range(3):
        assert rt.exit().exit_code == 0
    base = int(rt.out("p/none"))
    assert int(rt.out("p/big")) == base
    assert int(rt.out("p/small")) == min(19, base + nice_level(0.1, os.cpu_count()))


def test_nobody_asking_means_no_full_scans(runtimes):
    h = runtimes(usage_interval=0.2, usage_linger=0.6)
    h.sh("p/c", "sleep 30")
    time.sleep(1.0)                                      # ten periodic scans
    assert h.rt.full_scans == 0                          # membership only: an idle node stays cheap
    assert h.rt.usage()["p/c"].processes >= 1            # no snapshot yet: measured on this thread
    assert h.rt.full_scans == 1
    time.sleep(0.5)
    assert h.rt.full_scans >= 2                          # asked lately: the scanner measures
    time.sleep(1.0)                                      # the linger has passed since the last ask
    settled = h.rt.full_scans
    time.sleep(0.6)
    assert h.rt.full_scans == settled
    h.rt.kill_now("p/c")
    h.exit()


def test_usage_from_the_background_snapshot_is_monotonic_and_positive(runtimes):
    h = runtimes(usage_interval=0.2)
    h.sh("p/burn", f"{PYTHON} -c '{BURN.format(s=1.5)}'; sleep 30")
    h.sh("p/idle", "sleep 30")
    samples, stamps = [], []
    first = h.rt.usage()                                 # the one scan on the caller's thread
    scans = h.rt.full_scans
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        usage = h.rt.usage()
        samples.append((usage["p/burn"].cpu_seconds, usage["p/idle"].cpu_seconds))
        stamps.append(usage["p/burn"].timestamp)
        time.sleep(0.03)
    assert h.rt.full_scans - scans <= 20                 # the callers above never scanned: the scanner did
    assert all(b >= a for a, b in zip(samples, samples[1:])), samples
    assert all(idle > 0 for _, idle in samples)
    assert samples[-1][0] > first["p/burn"].cpu_seconds + 0.5
    # the time of each value is that of the scan that measured it, not of the call
    assert len(set(stamps)) >= 5 and stamps == sorted(stamps)
    assert all(t <= time.time() for t in stamps)
    h.rt.kill_now("p/idle")
    h.exit()
    assert "p/idle" not in h.rt.usage()                  # an ended run leaves the snapshot at once
    h.rt.kill_now("p/burn")
    h.exit()
