"""Benchmark of vkcmd.runtime against a bare posix_spawn floor measured in the same run.

    python tools/bench/bench_runtime.py [--runs 300] [--idle 500] [--idle-seconds 10]

Prints p50/p99 (ms) of:
  launch            Runtime.launch() of `true` returning        | floor: os.posix_spawn(`true`) returning
  launch->exit seen launch() until on_exit(`true`) is called    | floor: posix_spawn + blocking waitpid
  exit notice       the command's last act (`date +%s.%N > stamp`) until on_exit is called
                                                                | floor: until a blocking waitpid returns
then, with --idle runs of `sleep` running (half with a memory limit): vkcmd's CPU (% of one core) and
RSS while idle, the latency of usage() (a full scan), and the time to kill them all.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vkcmd.runtime import LaunchSpec, Runtime  # noqa: E402


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def row(name, values, floor=None):
    ms = [v * 1000 for v in values]
    text = f"{name:<20} p50 {pct(ms, 50):7.2f}  p99 {pct(ms, 99):7.2f}"
    if floor:
        fl = [v * 1000 for v in floor]
        text += f"   | floor p50 {pct(fl, 50):7.2f}  p99 {pct(fl, 99):7.2f}"
    print(text)


def floor_spawn(n, env):
    spawn, total = [], []
    true = "/bin/true"
    for _ in range(n):
        t0 = time.perf_counter()
        pid = os.posix_spawn(true, [true], env, setsid=True)
        t1 = time.perf_counter()
        os.waitpid(pid, 0)
        t2 = time.perf_counter()
        spawn.append(t1 - t0)
        total.append(t2 - t0)
    return spawn, total


def floor_notice(n, env, d):
    out = []
    argv = ["/bin/sh", "-c", "exec date +%s.%N > stamp"]
    for _ in range(n):
        pid = os.posix_spawn(argv[0], argv, env)
        os.waitpid(pid, 0)
        seen = time.time()
        out.append(max(seen - float((d / "stamp").read_text()), 0.0))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--idle", type=int, default=500)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--all-limited", action="store_true", help="every idle run has a memory limit")
    args = ap.parse_args()
    env = {"PATH": "/usr/bin:/bin"}
    base = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    seen: queue.Queue = queue.Queue()
    rt = Runtime(base / "state", on_exit=lambda r: seen.put((time.perf_counter(), time.time(), r)))
    rt.start()
    d = base / "c"
    d.mkdir()
    print(f"host: {os.cpu_count()} CPUs, kernel {os.uname().release}, /bin/sh -> {os.path.realpath('/bin/sh')}")

    floor_launch, floor_total = floor_spawn(args.runs, env)
    launch, total, notice = [], [], []
    for i in range(args.runs):
        t0 = time.perf_counter()
        rt.launch(LaunchSpec(f"b/{i}", ["true"], env, str(d), str(d)))
        t1 = time.perf_counter()
        t_seen, wall_seen, report = seen.get(timeout=10)
        assert report.exit_code == 0, report
        launch.append(t1 - t0)
        total.append(t_seen - t0)
        rt.forget(f"b/{i}")
    for i in range(args.runs):
        rt.launch(LaunchSpec(f"n/{i}", ["sh", "-c", "exec date +%s.%N > stamp"], env, str(d), str(d)))
        _, wall_seen, report = seen.get(timeout=10)
        notice.append(max(wall_seen - float((d / "stamp").read_text()), 0.0))
        rt.forget(f"n/{i}")
    os.chdir(d)
    floor_exit = floor_notice(args.runs, env, d)
    row("launch", launch, floor_launch)
    row("launch->exit seen", total, floor_total)
    row("exit notice", notice, floor_exit)

    proc = psutil.Process()
    n = args.idle
    t0 = time.perf_counter()
    for i in range(n):
        limit = (512 << 20) if i % 2 or args.all_limited else None
        rt.launch(LaunchSpec(f"idle/{i}", ["sleep", "1000"], env, str(d), str(d), memory_limit_bytes=limit))
    print(f"started {n} idle runs in {time.perf_counter() - t0:.2f} s")
    time.sleep(2.0)                                      # first scans (one environ read per new process)
    c0, w0 = time.process_time(), time.perf_counter()
    time.sleep(args.idle_seconds)
    c1, w1 = time.process_time(), time.perf_counter()
    cpu = (c1 - c0) / (w1 - w0) * 100
    print(f"idle with {n} runs ({n if args.all_limited else n // 2} memory-limited), scan every 1 s: "
          f"vkcmd CPU {cpu:.2f} % of a core, RSS {proc.memory_info().rss / 2**20:.1f} MiB, "
          f"{proc.num_fds()} fds")
    lat = []
    for _ in range(10):
        t = time.perf_counter()
        usage = rt.refresh()
        lat.append(time.perf_counter() - t)
    assert len(usage) == n, len(usage)
    row(f"usage() at {n} runs", lat)
    t0 = time.perf_counter()
    for i in range(n):
        rt.terminate(f"idle/{i}", 0)
    for _ in range(n):
        seen.get(timeout=30)
    print(f"killed {n} runs (grace 0), all exits seen in {time.perf_counter() - t0:.2f} s")
    rt.stop()


if __name__ == "__main__":
    main()
