"""Benchmark of the container-log path: the arrival-time indexer and the reader.

    python tools/bench/bench_logs.py [--idle 500] [--chatty 100] [--rates 10,100] [--seconds 5]
                                     [--samples 400] [--size-mb 100]

Prints:
  idle      the indexer's CPU (% of one core) with --idle containers watched and nothing written
  chatty    its CPU with --chatty containers each appending --rates lines/s (alternating stdout and
            stderr), written by one separate process through O_APPEND fds, as containers write;
            also events, batches and index records per second
  latency   p50/p99 from a write to its index record: the stamp given (record time - time before
            the write) and when the record is visible to a reader; alone, and beside the chatty load
  reader    throughput of stream_logs over --size-mb of output (stdout and stderr interleaved,
            indexed in bursts): plain, with timestamps, tail 1000, since (second half)
The indexer runs in this process and the writers in another, so this process's CPU time is the
indexer's (the main thread sleeps while measuring).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vkcmd.containerlogs import LogIndexer, LogOptions, stream_logs  # noqa: E402
from vkcmd.containerlogs.indexfile import RECORD, index_name  # noqa: E402

WRITER = r"""
import os, sys, time
dirs, rate, seconds = sys.argv[1].split(','), float(sys.argv[2]), float(sys.argv[3])
fds = [(os.open(os.path.join(d, 'stdout'), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
        os.open(os.path.join(d, 'stderr'), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)) for d in dirs]
line = b'%08d some log line of a typical length, with a few words in it and a number\n'
interval = 1.0 / (rate * len(dirs))
start = time.monotonic(); n = 0
while True:
    due = start + n * interval
    now = time.monotonic()
    if now - start > seconds:
        break
    if due > now:
        time.sleep(due - now)
    out, err = fds[n % len(fds)]
    os.write(out if (n // len(fds)) % 2 == 0 else err, line % n)
    n += 1
print(n)
"""


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def make_dirs(root, count, prefix):
    dirs = []
    for i in range(count):
        path = os.path.join(root, f"{prefix}{i:04d}")
        os.makedirs(path)
        for name in ("stdout", "stderr"):
            open(os.path.join(path, name), "ab").close()
        dirs.append(path)
    return dirs


def cpu_during(seconds, indexer):
    before_cpu, before_stats = time.process_time(), dict(indexer.stats)
    time.sleep(seconds)
    used = time.process_time() - before_cpu
    stats = {k: (indexer.stats[k] - before_stats[k]) / seconds for k in before_stats}
    return 100 * used / seconds, stats


def bench_idle(root, count, seconds):
    indexer = LogIndexer()
    indexer.start()
    try:
        dirs = make_dirs(root, count, "idle")
        started = time.perf_counter()
        for path in dirs:
            indexer.watch(path)
        watch_ms = (time.perf_counter() - started) * 1000
        time.sleep(0.2)
        cpu, stats = cpu_during(seconds, indexer)
        watched, polled = indexer.watch_counts()
        print(f"idle      {count} containers ({watched} inotify watches, {polled} polled; watch() all: "
              f"{watch_ms:.0f} ms): indexer CPU {cpu:.3f}% of a core, {stats['batches']:.1f} wakeups/s")
    finally:
        indexer.stop()


def start_writers(dirs, rate, seconds):
    return subprocess.Popen([sys.executable, "-c", WRITER, ",".join(dirs), str(rate), str(seconds)],
                            stdout=subprocess.PIPE, text=True)


def bench_chatty(root, count, rate, seconds):
    indexer = LogIndexer()
    indexer.start()
    try:
        dirs = make_dirs(root, count, f"chatty{int(rate)}-")
        for path in dirs:
            indexer.watch(path)
        writer = start_writers(dirs, rate, seconds + 1.0)
        time.sleep(0.5)
        cpu, stats = cpu_during(seconds, indexer)
        written = int(writer.communicate()[0])
        indexer.flush(dirs[0])
        print(f"chatty    {count} containers x {rate:g} lines/s ({count * rate:g} lines/s; {written} written): "
              f"indexer CPU {cpu:.2f}% of a core; {stats['events']:.0f} events/s, {stats['batches']:.0f} batches/s, "
              f"{stats['records']:.0f} records/s")
    finally:
        indexer.stop()


def bench_latency(root, samples, load_count, load_rate):
    indexer = LogIndexer()
    indexer.start()
    writer = None
    try:
        target = make_dirs(root, 1, f"latency{load_count}-")[0]
        indexer.watch(target)
        label = "alone"
        if load_count:
            dirs = make_dirs(root, load_count, f"load{load_count}-")
            for path in dirs:
                indexer.watch(path)
            writer = start_writers(dirs, load_rate, samples * 0.006 + 5)
            time.sleep(0.3)
            label = f"beside {load_count} x {load_rate:g} lines/s"
        stamped, visible = [], []
        fd = os.open(os.path.join(target, "stdout"), os.O_WRONLY | os.O_APPEND)
        idx = os.path.join(target, index_name("stdout"))
        size = 0
        for i in range(samples):
            token = indexer.changes(target)
            before = time.time_ns()
            t0 = time.perf_counter()
            size += os.write(fd, b"latency probe %d\n" % i)
            while True:
                token = indexer.wait_for_change(target, token, 1.0)
                try:
                    with open(idx, "rb") as f:
                        f.seek(-RECORD.size, os.SEEK_END)
                        end, when = RECORD.unpack(f.read(RECORD.size))
                except (FileNotFoundError, OSError):
                    continue
                if end >= size:
                    break
            visible.append(time.perf_counter() - t0)
            stamped.append((when - before) / 1e9)
            time.sleep(0.005)
        os.close(fd)
        print(f"latency   {label}: stamp p50 {pct(stamped, 50) * 1000:.3f} ms p99 {pct(stamped, 99) * 1000:.3f} ms; "
              f"record visible p50 {pct(visible, 50) * 1000:.3f} ms p99 {pct(visible, 99) * 1000:.3f} ms "
              f"({samples} writes)")
    finally:
        if writer is not None:
            writer.kill()
            writer.wait()
        indexer.stop()


def bench_reader(root, size_mb):
    path = make_dirs(root, 1, "reader")[0]
    indexer = LogIndexer()  # not started: each flush below is one burst, as the thread would record it
    line = b"%09d a log line of about eighty bytes, words and numbers: 3.14159 2.71828 42\n"
    burst = 50  # lines per burst
    target = size_mb * 1024 * 1024
    written = lines = 0
    fds = [os.open(os.path.join(path, name), os.O_WRONLY | os.O_APPEND) for name in ("stdout", "stderr")]
    indexer.watch(path)
    n = 0
    while written < target:
        chunk = b"".join(line % (n + k) for k in range(burst))
        written += os.write(fds[n // burst % 2], chunk)
        lines += burst
        n += burst
        indexer.flush(path)
    for fd in fds:
        os.close(fd)
    indexer.unwatch(path)
    mb = written / 1e6

    def timed(label, options):
        started = time.perf_counter()
        out = 0
        for chunk in stream_logs(path, options, is_running=lambda: False, indexer=indexer):
            out += len(chunk)
        took = time.perf_counter() - started
        return f"{label} {out / 1e6 / took:.0f} MB/s ({out / 1e6:.0f} MB in {took * 1000:.0f} ms)"

    idx_bytes = sum(os.path.getsize(os.path.join(path, index_name(n))) for n in ("stdout", "stderr"))
    since = None
    with open(os.path.join(path, index_name("stdout")), "rb") as f:
        data = f.read()
        records = (len(data) - 16) // RECORD.size
        since = RECORD.unpack_from(data, 16 + records // 2 * RECORD.size)[1]
    timed("warm-up", LogOptions())  # the page cache, as for a log read again
    print(f"reader    {mb:.0f} MB, {lines} lines, index {idx_bytes / 1e3:.0f} kB:")
    print("          " + timed("plain", LogOptions()))
    print("          " + timed("timestamps", LogOptions(timestamps=True)))
    print("          " + timed("tail 1000", LogOptions(tail_lines=1000)))
    print("          " + timed("since half", LogOptions(since_time_ns=since)))
    print("          " + timed("limit 1MB", LogOptions(limit_bytes=1_000_000)))
    started = time.perf_counter()
    for _ in range(200):
        b"".join(stream_logs(path, LogOptions(tail_lines=10), is_running=lambda: False, indexer=indexer))
    print(f"          tail 10 request: {(time.perf_counter() - started) / 200 * 1000:.2f} ms each")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--chatty", type=int, default=100)
    parser.add_argument("--rates", default="10,100", help="lines/s per chatty container, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--size-mb", type=int, default=100)
    args = parser.parse_args()
    limit = open("/proc/sys/fs/inotify/max_user_watches").read().strip()
    print(f"cpus {os.cpu_count()}, max_user_watches {limit}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as root:
        bench_idle(root, args.idle, args.seconds)
        for rate in (float(r) for r in args.rates.split(",")):
            bench_chatty(root, args.chatty, rate, args.seconds)
        bench_latency(root, args.samples, 0, 0)
        bench_latency(root, args.samples, args.chatty, float(args.rates.split(",")[0]))
        bench_reader(root, args.size_mb)


if __name__ == "__main__":
    main()
