"""Scale benchmark (issue 16): a node with thousands of idle pods, and the RSS of an empty node.

    python -m tools.bench.bench_scale [--pods 5000] [--idle 30] [--stats 60] [--rounds 20] [--py-spy DIR]
    python -m tools.bench.bench_scale --baseline        # RSS of a node with no pod only

kubelite in its own process, one real ``python -m vkcmd`` node with ``VK_PODS`` raised. Figures,
each beside a floor measured in the same run:
  start   vkcmd CPU per pod start, first batch of 500 against the last one (cost per pod flat);
  idle    vkcmd CPU (user+sys of its process) over ``--idle`` s with nobody asking for stats;
  stats   the same over ``--stats`` s with stats asked at metrics-server cadence (/metrics/resource
          every 15 s, /stats/summary every 10 s);
  p50     /stats/summary and /metrics/resource, ``--rounds`` cold requests each (1.1 s apart);
  memory  RSS, threads and fds of vkcmd at N idle pods.
Floors: a bare pass over /proc reading every process's stat (``bench_kubeletapi.scan_proc``);
vkcmd with no pod; a bare interpreter (``python -c``: no import at all) for the RSS of an empty node.
Every pod is deleted at the end, and every process of ours still carrying a marker is killed.
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.bench.bench_kubeletapi import scan_proc  # noqa: E402
from tools.bench.bench_pods import PySpy  # noqa: E402
from tools.bench.harness import (REPO, ControlPlaneProcess, PodWatch, Report, VkNode, clean_namespace,  # noqa: E402
                                 kill_marked, marked_processes, pct, pod_manifest, run_parallel, wait_until)
from vkcmd.kube.client import path  # noqa: E402

PODS = path(resource="pods", namespace="default")
BATCH = 500
#: metrics-server's cadence (its default --metric-resolution is 15 s) and a /stats/summary scraper's.
RESOURCE_EVERY, SUMMARY_EVERY = 15.0, 10.0


def cpu_of(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def check_limits(pods: int) -> None:
    """Each pod is two processes (monitor + command); the tracker keeps up to 2 fds per member:
    refuse to start what would exhaust the machine's process or pid limits."""
    need = 2 * pods + 500
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    running = len([n for n in os.listdir("/proc") if n.isdigit()])
    if nproc != resource.RLIM_INFINITY and nproc < need + running:
        raise SystemExit(f"RLIMIT_NPROC {nproc} is too low for {pods} pods (~{need} processes beside {running})")
    if pid_max < need + running + 1000:
        raise SystemExit(f"pid_max {pid_max} is too low for {pods} pods (~{need} processes beside {running})")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"limits: RLIMIT_NPROC {nproc}, pid_max {pid_max}, RLIMIT_NOFILE {soft}/{hard}, "
          f"{running} processes running now", flush=True)


def bare_rss(code: str) -> int:
    """RSS of ``python -c code`` once it is idle (the code ends in a sleep)."""
    child = subprocess.Popen([sys.executable, "-c", code + "\nimport time; time.sleep(30)"], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.0)
        return psutil.Process(child.pid).memory_info().rss
    finally:
        child.kill()
        child.wait()


class Scraper:
    """HTTPS requests to the node's kubelet API with a system:masters client certificate."""

    def __init__(self, cp: ControlPlaneProcess, port: int) -> None:
        cert, key = cp.client_cert("bench", ["system:masters"])
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE
        self.context.load_cert_chain(cert, key)
        self.port = port
        self.connection = self._connect()

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=60)

    def get(self, url: str) -> float:
        started = time.perf_counter()
        self.connection.request("GET", url)
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {body[:200]!r}")
        return time.perf_counter() - started

    def close(self) -> None:
        self.connection.close()


def baseline(args: argparse.Namespace, workdir: Path, report: Report) -> None:
    print("[baseline] RSS of a node with no pod", flush=True)
    with ControlPlaneProcess(workdir, scheduler=False) as cp, VkNode(cp, workdir, verbosity=args.verbosity) as node:
        time.sleep(5)
        vk = psutil.Process(node.pid)
        rss = vk.memory_info().rss
        report.figure("RSS of a node with no pod", rss / 2**20, 40 * 10**6 / 2**20, "MiB", "{:.1f}")
        report.info("  threads / fds", f"{vk.num_threads()} / {vk.num_fds()}")
        full = vk.memory_full_info()
        report.info("  of which private (USS) / proportional (PSS)",
                    f"{full.uss / 2**20:.1f} / {full.pss / 2**20:.1f} MiB")
        report.info("  cryptography loaded", str(any("cryptography" in (m.path or "") for m in vk.memory_maps())))
    report.info("  floor: bare interpreter (python -c pass)", f"{bare_rss('pass') / 2**20:.1f} MiB")
    report.info("  floor: interpreter + import vkcmd.app", f"{bare_rss('import vkcmd.app') / 2**20:.1f} MiB")
    report.info("  context: interpreter + import kubernetes", f"{bare_rss('import kubernetes') / 2**20:.1f} MiB")


def scale(args: argparse.Namespace, workdir: Path, report: Report) -> None:
    n = args.pods
    check_limits(n)
    with ControlPlaneProcess(workdir, scheduler=False) as cp, \
            VkNode(cp, workdir, verbosity=args.verbosity, VK_PODS=str(n + 100)) as node, \
            PodWatch(node.client) as watch:
        vk = psutil.Process(node.pid)
        try:
            time.sleep(3)
            c0, t0 = cpu_of(vk), time.monotonic()
            time.sleep(args.idle / 3)
            empty = (cpu_of(vk) - c0) / (time.monotonic() - t0) * 100
            print(f"[start] {n} pods `sleep 3600` in batches of {BATCH} (load {load()})", flush=True)
            per_pod: list[float] = []
            started = time.perf_counter()
            with PySpy(args.py_spy, node.pid, "start"):
                for first in range(0, n, BATCH):
                    names = [f"s-{i:05d}" for i in range(first, min(n, first + BATCH))]
                    c0 = cpu_of(vk)
                    run_parallel(names, lambda name: node.client.create(
                        PODS, pod_manifest(name, ["sleep", "3600"], node=node.name, restart="Always")), 8)
                    watch.wait_all(names, "Running", 600)
                    per_pod.append((cpu_of(vk) - c0) / len(names) * 1000)
                    print(f"  {first + len(names):5d} Running, {per_pod[-1]:.2f} ms CPU/pod, load {load()}", flush=True)
            up = time.perf_counter() - started
            report.info(f"{n} pods created -> all Running", f"{up:.1f} s")
            report.info(f"start CPU/pod, pods 0-{BATCH}", f"{per_pod[0]:.2f} ms")
            report.figure(f"start CPU/pod, last {BATCH} (<= first batch x 1.2)", per_pod[-1], per_pod[0] * 1.2,
                          "ms", "{:.2f}")
            time.sleep(10)  # trailing writes, events, log watches

            print(f"[idle] {n} idle pods, nobody asking for stats, {args.idle:.0f} s (load {load()})", flush=True)
            with PySpy(args.py_spy, node.pid, "idle"):
                c0, t0 = cpu_of(vk), time.monotonic()
                time.sleep(args.idle)
                idle = (cpu_of(vk) - c0) / (time.monotonic() - t0) * 100
            report.figure(f"vkcmd CPU, {n} idle pods", idle, 2.0, "% core", "{:.2f}")
            report.info("  floor: vkcmd CPU with no pod", f"{empty:.2f} %  (load {load()})")

            print(f"[stats] stats asked at metrics-server cadence, {args.stats:.0f} s (load {load()})", flush=True)
            scraper = Scraper(cp, node.port)
            scraper.get("/healthz")
            cadence: dict[str, list[float]] = {"summary": [], "resource": []}
            with PySpy(args.py_spy, node.pid, "stats"):
                c0, t0 = cpu_of(vk), time.monotonic()
                due = {"resource": t0, "summary": t0 + 1.0}
                urls = {"resource": "/metrics/resource", "summary": "/stats/summary"}
                every = {"resource": RESOURCE_EVERY, "summary": SUMMARY_EVERY}
                while time.monotonic() - t0 < args.stats:
                    kind = min(due, key=due.get)
                    time.sleep(max(0.0, due[kind] - time.monotonic()))
                    cadence[kind].append(scraper.get(urls[kind]))
                    due[kind] += every[kind]
                elapsed = time.monotonic() - t0
                asked = (cpu_of(vk) - c0) / elapsed * 100
            report.figure(f"vkcmd CPU, {n} idle pods, stats asked", asked, 4.0, "% core", "{:.2f}")
            report.info("  cadence requests: summary / resource p50 (first)",
                        f"{pct(cadence['summary'], 50) * 1000:.0f} / {pct(cadence['resource'], 50) * 1000:.0f} ms "
                        f"({cadence['summary'][0] * 1000:.0f} / {cadence['resource'][0] * 1000:.0f})")

            print(f"[latency] {args.rounds} cold rounds (load {load()})", flush=True)
            samples: dict[str, list[float]] = {"summary": [], "resource": [], "healthz": []}
            with PySpy(args.py_spy, node.pid, "latency"):
                c0 = cpu_of(vk)
                for _ in range(args.rounds):
                    time.sleep(1.1)
                    samples["summary"].append(scraper.get("/stats/summary"))
                    samples["healthz"].append(scraper.get("/healthz"))
                    time.sleep(1.1)
                    samples["resource"].append(scraper.get("/metrics/resource"))
                pair_cpu = (cpu_of(vk) - c0) / args.rounds * 1000
            scraper.close()
            scans = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                scan_proc()
                scans.append(time.perf_counter() - t)
            report.ms(f"/stats/summary cold ({n} pods)", samples["summary"], 60, 1000)
            report.ms("/metrics/resource cold", samples["resource"], 60, 1000)
            report.info("  vkcmd CPU per cold pair of requests", f"{pair_cpu:.0f} ms")
            report.ms("  floor: /healthz on the same connection", samples["healthz"])
            report.ms("  floor: one bare /proc scan (every stat)", scans)

            rss = vk.memory_info().rss
            report.figure(f"vkcmd RSS, {n} idle pods", rss / 2**20, 250 * 10**6 / 2**20, "MiB", "{:.0f}")
            report.info("  threads / fds", f"{vk.num_threads()} / {vk.num_fds()}")
        finally:
            print(f"[cleanup] deleting {n} pods (load {load()})", flush=True)
            t = time.monotonic()
            try:
                clean_namespace(node.client, timeout=900)
                wait_until(lambda: not marked_processes(node.home), 120, "no VKCMD_RUN process of ours left",
                           interval=1.0)
            except Exception as error:  # noqa: BLE001 (the processes are killed below regardless)
                print(f"  cleanup: {error}", flush=True)
            print(f"  all deleted in {time.monotonic() - t:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of the idle window")
    parser.add_argument("--stats", type=float, default=60.0, help="seconds of the metrics-server cadence window")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--baseline", action="store_true", help="only the RSS of a node with no pod")
    parser.add_argument("--py-spy", dest="py_spy", default=None, help="record vkcmd with py-spy into this dir")
    parser.add_argument("--verbosity", type=int, default=2, help="vkcmd --klog.v")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) at the end")
    args = parser.parse_args(argv)
    if args.py_spy:
        os.makedirs(args.py_spy, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "vkcmd"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip())
    print(f"bench_scale: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, commit {commit}"
          f"{' (vkcmd/ modified)' if dirty else ''}, workdir {workdir}, loadavg {load()}", flush=True)
    report = Report()
    started = time.monotonic()
    try:
        if args.baseline:
            baseline(args, workdir, report)
        else:
            scale(args, workdir, report)
    finally:
        left = kill_marked(workdir / "home")
        print(f"cleanup: {len(left)} VKCMD_RUN process(es) left behind{' (killed)' if left else ''}; "
              f"total {time.monotonic() - started:.0f} s; loadavg {load()}", flush=True)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    misses = [row for row in report.rows if row[3] == "MISS"]
    print(f"{len(misses)} MISS of {sum(1 for row in report.rows if row[3])} figures")
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
