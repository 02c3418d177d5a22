"""The pod benchmarks of SPEC §8, end to end: kubelite (own process) + a real ``python -m vkcmd`` node.

    python -m tools.bench.bench_pods [--quick] [--only 1,2,...] [--py-spy DIR] [--keep]

Figures (each printed with its target and PASS/MISS, beside a floor measured in the same run):
  1  one pod, API create -> Running seen by a watcher (bound with spec.nodeName, and through the
     scheduler); p50 <= 50 ms, p99 <= 150 ms.  Floors: bare spawn of `sleep`; the API's own
     create -> ADDED seen and status PATCH -> MODIFIED seen (no vkcmd in the loop).
  2  process exit -> terminal phase seen (the pod blocks reading a FIFO; the bench writes it at t0);
     p50 <= 50 ms, p99 <= 150 ms.  Floor: the same `sh` read on a FIFO, bare, until waitpid returns.
  3  200 pods created at once (8 threads) all Running in <= 4 s.  Floors: 200 bare spawns; the same
     creates of pods bound to a node nobody runs, until the last ADDED is seen.
  4  1000 short pods (`true`, restartPolicy Never) created -> Succeeded -> deleted by the client
     (default grace) in <= 40 s, none lost.  Floor: the same life with the API alone (create,
     PATCH Succeeded, DELETE grace 0) from the same threads; 1000 bare spawn+wait of `true`.
  5  500 idle running pods: vkcmd's own CPU (user+sys of its process, not the pods') <= 2 % of a
     core and RSS <= 150 MB.  Floor: vkcmd's CPU with no pod.
  6  /stats/summary and /metrics/resource at 500 pods <= 100 ms (p50/p99; each "cold" request
     waits out the 1 s stats cache).  Floors: /healthz on the same TLS connection; one /proc scan.
  7  status writes (PATCH/PUT pods/status counted inside kubelite): <= 4 per pod life (short pod;
     long pod deleted), and none from steady pods (during figure 5's window).
  9  (with 8, not by default) start CPU per pod: vkcmd's CPU per pod for the first 500 pods `sleep`
     Running and for the last 500 up to --pods (2000; VK_PODS raised): the ratio <= 1.2 (flat).
  8  then those --pods running pods deleted at once (default grace, 8 threads) -> all DELETED seen:
     <= 6 s for 2000, <= 15 s for 5000.  Floor: the same ending by the API alone (DELETE, status
     PATCH, DELETE grace 0) on pods bound to a node nobody runs.

--py-spy DIR records vkcmd and kubelite with py-spy during each figure (DIR/fig<N>.txt and
DIR/fig<N>-kubelite.txt, raw folded stacks).
Everything started is stopped at the end and /proc is checked for VKCMD_RUN leftovers.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import queue
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.bench.harness import (REPO, ControlPlaneProcess, PodWatch, Report, VkNode, clean_namespace,  # noqa: E402
                                 delete_pods, floor_spawn, kill_all, marked_processes, pod_manifest,
                                 run_parallel, wait_until)
from vkcmd.kube.client import MERGE_PATCH, ApiError, path  # noqa: E402

NOWHERE = "bench-nowhere"  # a node nobody runs: pods bound to it are the API-only floor
PODS = path(resource="pods", namespace="default")


def pod_path(name: str, subresource: str | None = None) -> str:
    return path(resource="pods", namespace="default", name=name, subresource=subresource)


class Bench:
    def __init__(self, args: argparse.Namespace, cp: ControlPlaneProcess, node: VkNode, watch: PodWatch,
                 workdir: Path) -> None:
        self.args = args
        self.cp = cp
        self.node = node
        self.client = node.client
        self.watch = watch
        self.workdir = workdir
        self.report = Report()
        self.workspaces_left: set[str] = set()

    def spy(self, label: str) -> contextlib.ExitStack:
        """py-spy recordings of vkcmd and kubelite for one phase of a figure (when asked)."""
        stack = contextlib.ExitStack()
        if self.args.py_spy:
            stack.enter_context(PySpy(self.args.py_spy, self.node.pid, label, self.args.py_spy_gil,
                                      self.args.py_spy_idle))
            stack.enter_context(PySpy(self.args.py_spy, self.cp.pid, f"{label}-kubelite", self.args.py_spy_gil))
        return stack

    def cpu(self) -> tuple[float, float]:
        """CPU seconds (user+sys) used so far by vkcmd and by kubelite (their own processes)."""
        out = []
        for pid in (self.node.pid, self.cp.pid):
            times = psutil.Process(pid).cpu_times()
            out.append(times.user + times.system)
        return out[0], out[1]

    def create(self, manifest: dict) -> None:
        self.client.create(PODS, manifest)

    def settle(self) -> None:
        """Delete every pod, wait until their processes are gone; note workspaces left behind."""
        clean_namespace(self.client)
        wait_until(lambda: not marked_processes(self.node.home), 30, "no VKCMD_RUN process of ours left")
        root = self.node.home / "default"

        def fresh_left() -> list[str]:
            left = sorted(os.listdir(root)) if root.is_dir() else []
            return [name for name in left if name not in self.workspaces_left]
        deadline = time.monotonic() + 10
        while (fresh := fresh_left()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if fresh:
            self.workspaces_left.update(fresh)
            self.report.info("  workspaces left after deletion (SPEC §3: removed)",
                             f"{len(fresh)} (e.g. {fresh[0]})")

    # --- 1 ---------------------------------------------------------------------------------
    def fig1(self) -> None:
        n = 30 if self.args.quick else 100
        print(f"[1] one pod, create -> Running seen ({n} sequential pods `sleep 3600`, each)", flush=True)
        spawn, processes = floor_spawn(n, ["sleep", "3600"])
        kill_all(processes)
        added, patched = [], []
        for i in range(n):
            name = f"fl1-{i:03d}"
            t0 = time.perf_counter()
            self.create(pod_manifest(name, ["sleep", "3600"], node=NOWHERE))
            added.append(self.watch.wait(name, "ADDED") - t0)
            t1 = time.perf_counter()
            self.client.patch(pod_path(name, "status"), {"status": {"phase": "Running"}}, MERGE_PATCH)
            patched.append(self.watch.wait(name, "Running") - t1)
        delete_pods(self.client, [f"fl1-{i:03d}" for i in range(n)])
        results = {}
        for label, bound in (("bound", True), ("scheduled", False)):
            running, scheduled, returned = [], [], []
            for i in range(n):
                name = f"f1{label[0]}-{i:03d}"
                t0 = time.perf_counter()
                self.create(pod_manifest(name, ["sleep", "3600"], node=self.node.name if bound else None,
                                         restart="Always"))
                returned.append(time.perf_counter() - t0)
                running.append(self.watch.wait(name, "Running") - t0)
                scheduled.append(self.watch.wait(name, "Scheduled") - t0)
                time.sleep(0.05)
            results[label] = (running, scheduled, returned)
            self.settle()
        r = self.report
        for label, (running, scheduled, returned) in results.items():
            r.ms(f"1 create->Running ({label})", running, 50, 150)
            if label == "scheduled":
                r.ms("  of which create->scheduled (nodeName seen)", scheduled)
        r.ms("  floor: bare spawn `sleep` until in /proc", spawn)
        r.ms("  floor: API create call returns", results["bound"][2])
        r.ms("  floor: API create -> ADDED seen (no vkcmd)", added)
        r.ms("  floor: API status PATCH -> MODIFIED seen", patched)
        ideal = [a + p + s for a, p, s in zip(added, patched, spawn)]
        r.ms("  floor: sum (an instant kubelet: ADDED+spawn+PATCH)", ideal)

    # --- 2 ---------------------------------------------------------------------------------
    def fig2(self) -> None:
        n = 30 if self.args.quick else 100
        print(f"[2] process exit -> terminal phase seen ({n} pods blocked on a FIFO)", flush=True)
        fifos = self.workdir / "fifos"
        fifos.mkdir(exist_ok=True)
        floor = []
        for i in range(n):
            fifo = fifos / f"floor-{i}"
            os.mkfifo(fifo)
            process = subprocess.Popen(["sh", "-c", f"read x < {fifo}"], start_new_session=True)
            with open(fifo, "w") as writer:  # blocks until the reader opened it
                t0 = time.perf_counter()
                writer.write("x\n")
            process.wait()
            floor.append(time.perf_counter() - t0)
        seen = []
        for i in range(n):
            name = f"f2-{i:03d}"
            fifo = fifos / f"pod-{i}"
            os.mkfifo(fifo)
            self.create(pod_manifest(name, ["sh", "-c", f"read x < {fifo}"], node=self.node.name))
            self.watch.wait(name, "Running")
            time.sleep(0.1)  # let the Running write and the events settle
            with open(fifo, "w") as writer:
                t0 = time.perf_counter()
                writer.write("x\n")
            seen.append(self.watch.wait(name, "Succeeded") - t0)
        self.settle()
        self.report.ms("2 exit -> Succeeded seen", seen, 50, 150)
        self.report.ms("  floor: bare `sh` FIFO read, write -> waitpid", floor)

    # --- 3 ---------------------------------------------------------------------------------
    def fig3(self) -> None:
        n, threads = 200, 8
        print(f"[3] {n} pods created at once ({threads} threads) until all Running", flush=True)
        t0 = time.perf_counter()
        spawn, processes = floor_spawn(n, ["sleep", "3600"])
        spawn_all = time.perf_counter() - t0
        kill_all(processes)
        names = [f"fl3-{i:03d}" for i in range(n)]
        t0 = time.perf_counter()
        run_parallel(names, lambda name: self.create(pod_manifest(name, ["sleep", "3600"], node=NOWHERE)), threads)
        api_created = time.perf_counter() - t0
        api_all = self.watch.wait_all(names, "ADDED", 60) - t0
        delete_pods(self.client, names)
        names = [f"f3-{i:03d}" for i in range(n)]
        cpu0 = self.cpu()
        t0 = time.perf_counter()
        run_parallel(names, lambda name: self.create(pod_manifest(name, ["sleep", "3600"], node=self.node.name,
                                                                  restart="Always")), threads)
        created = time.perf_counter() - t0
        try:
            last = self.watch.wait_all(names, "Running", 60) - t0
            cpu1 = self.cpu()
        finally:
            counts = self.cp.counts()["status"]
            writes = sum(counts.get(name, 0) for name in names)
            self.settle()
        self.report.figure(f"3 {n} pods created at once: all Running", last, 4.0, "s", "{:.2f}")
        self.report.info("  creates issued (vkcmd running)", f"{created:.2f} s")
        self.report.info("  status writes per pod (to Running)", f"{writes / n:.2f}")
        self.report.info("  CPU used: vkcmd / kubelite (of 2 cores x wall)",
                         f"{cpu1[0] - cpu0[0]:.2f} / {cpu1[1] - cpu0[1]:.2f} s of {2 * last:.2f} s")
        self.report.info("  floor: API creates issued / last ADDED seen", f"{api_created:.2f} / {api_all:.2f} s")
        self.report.info(f"  floor: {n} bare spawns of `sleep`", f"{spawn_all:.2f} s")

    # --- 4 ---------------------------------------------------------------------------------
    def fig4(self) -> None:
        n = 300 if self.args.quick else 1000
        threads = 4
        print(f"[4] {n} short pods (`true`, Never): create -> Succeeded -> deleted by the client", flush=True)
        t0 = time.perf_counter()
        for _ in range(n):
            subprocess.run(["true"], start_new_session=True)
        spawn_all = time.perf_counter() - t0

        def api_life(name: str) -> None:
            self.create(pod_manifest(name, ["true"], node=NOWHERE))
            self.client.patch(pod_path(name, "status"), {"status": {"phase": "Succeeded"}}, MERGE_PATCH)
            self.client.delete(pod_path(name), {"gracePeriodSeconds": 0})
        names = [f"fl4-{i:04d}" for i in range(n)]
        t0 = time.perf_counter()
        run_parallel(names, api_life, threads)
        api_all = self.watch.wait_all(names, "DELETED", 60) - t0

        names = [f"f4-{i:04d}" for i in range(n)]
        wanted = set(names)
        ends: queue.SimpleQueue = queue.SimpleQueue()
        outcome = {"Succeeded": 0, "Failed": 0}

        def on_event(mark: str, name: str, _pod: dict) -> None:
            if name in wanted and mark in ("Succeeded", "Failed"):
                outcome[mark] += 1
                ends.put(name)
        self.watch.on_event = on_event
        delete_errors: list[str] = []

        def deleter() -> None:
            while (name := ends.get()) is not None:
                try:
                    self.client.delete(pod_path(name))  # the default grace, like `kubectl delete pod`
                except ApiError as error:
                    delete_errors.append(f"{name}: {error}")
        deleters = [threading.Thread(target=deleter, name=f"bench-deleter-{i}") for i in range(threads)]
        for thread in deleters:
            thread.start()
        cpu0 = self.cpu()
        t0 = time.perf_counter()
        try:
            run_parallel(names, lambda name: self.create(pod_manifest(name, ["true"], node=self.node.name)), threads)
            created = time.perf_counter() - t0
            budget = 120 if not self.args.quick else 60
            try:
                last = self.watch.wait_all(names, "DELETED", budget) - t0
            except TimeoutError as error:
                last = float("inf")
                print(f"  {error}", flush=True)
        finally:
            self.watch.on_event = None
            for _ in deleters:
                ends.put(None)
            for thread in deleters:
                thread.join()
        cpu1 = self.cpu()
        deleted = self.watch.count("DELETED", names)
        counts = self.cp.counts()
        writes = [counts["status"].get(name, 0) for name in names]
        noop = sum(counts["noop"].get(name, 0) for name in names)
        self.settle()
        lost = n - deleted
        r = self.report
        r.figure(f"4 {n} short pods, whole life", last, 40.0 * n / 1000, "s", "{:.2f}")
        r.figure("  pods lost (not Succeeded+deleted)", lost + outcome["Failed"], 0, "pods", "{:.0f}")
        r.info("  Succeeded / Failed / DELETED seen", f"{outcome['Succeeded']} / {outcome['Failed']} / {deleted}")
        r.info("  creates issued", f"{created:.2f} s")
        r.info("  CPU used: vkcmd / kubelite (of 2 cores x wall)",
               f"{cpu1[0] - cpu0[0]:.2f} / {cpu1[1] - cpu0[1]:.2f} s of {2 * last:.2f} s")
        r.info("  status writes per pod (mean / max)", f"{sum(writes) / n:.2f} / {max(writes)}  (no-op {noop})")
        if delete_errors:
            r.info("  client delete errors", f"{len(delete_errors)} e.g. {delete_errors[0][:60]}")
        r.info(f"  floor: API-only life x{n} ({threads} threads)", f"{api_all:.2f} s")
        r.info(f"  floor: {n} bare spawn+wait of `true`", f"{spawn_all:.2f} s")

    # --- 5, 6, and 7 (steady) -------------------------------------------------------------------------
    def fig5_6(self) -> None:
        n = 500
        window = 20.0 if self.args.quick else 60.0
        rounds = 10 if self.args.quick else 30
        vk = psutil.Process(self.node.pid)
        kl = psutil.Process(self.cp.pid)

        def cpu(process: psutil.Process) -> float:
            times = process.cpu_times()
            return times.user + times.system
        print(f"[5] {n} idle pods: vkcmd CPU over {window:.0f} s and RSS (first {window / 3:.0f} s with no pod)",
              flush=True)
        c0, t0 = cpu(vk), time.monotonic()
        time.sleep(window / 3)
        idle0 = (cpu(vk) - c0) / (time.monotonic() - t0) * 100
        rss0 = vk.memory_info().rss
        names = [f"f5-{i:03d}" for i in range(n)]
        t0 = time.perf_counter()
        run_parallel(names, lambda name: self.create(pod_manifest(name, ["sleep", "3600"], node=self.node.name,
                                                                  restart="Always")), 8)
        up = self.watch.wait_all(names, "Running", 120) - t0
        time.sleep(5)  # trailing writes and events
        before = self.cp.counts()["status"]
        c0, k0, t0 = cpu(vk), cpu(kl), time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - t0
        share, kshare = (cpu(vk) - c0) / elapsed * 100, (cpu(kl) - k0) / elapsed * 100
        rss = vk.memory_info().rss
        after = self.cp.counts()["status"]
        steady = sum(after.get(name, 0) - before.get(name, 0) for name in names)
        threads = vk.num_threads()
        r = self.report
        r.figure(f"5 vkcmd CPU, {n} idle pods", share, 2.0, "% core", "{:.2f}")
        r.figure(f"5 vkcmd RSS, {n} idle pods", rss / 2**20, 150, "MiB", "{:.0f}")
        r.info("  vkcmd threads at 500 pods", str(threads))
        r.info(f"  {n} pods created -> all Running", f"{up:.2f} s")
        r.info("  floor: vkcmd CPU / RSS with no pod", f"{idle0:.2f} % / {rss0 / 2**20:.0f} MiB")
        r.info("  kubelite CPU during the window", f"{kshare:.2f} %")
        r.figure(f"7 status writes of {n} steady pods in {window:.0f} s", steady, 0, "writes", "{:.0f}")

        print(f"[6] stats endpoints at {n} pods ({rounds} rounds; cold = after the 1 s cache expired)", flush=True)
        cert, key = self.cp.client_cert("bench", ["system:masters"])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(cert, key)
        connection = http.client.HTTPSConnection("127.0.0.1", self.node.port, context=context, timeout=30)

        def get(url: str) -> tuple[float, bytes]:
            started = time.perf_counter()
            connection.request("GET", url)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {url}: {response.status} {body[:200]!r}")
            return time.perf_counter() - started, body
        get("/healthz")
        samples: dict[str, list[float]] = {"summary": [], "resource": [], "warm": [], "healthz": []}
        reported = 0
        c0 = cpu(vk)
        for _ in range(rounds):
            time.sleep(1.1)
            took, body = get("/stats/summary")
            samples["summary"].append(took)
            reported = len(json.loads(body)["pods"])
            samples["warm"].append(get("/stats/summary")[0])
            samples["healthz"].append(get("/healthz")[0])
            time.sleep(1.1)
            samples["resource"].append(get("/metrics/resource")[0])
        connection.close()
        stats_cpu = cpu(vk) - c0
        from tools.bench.bench_kubeletapi import scan_proc
        scans = []
        for _ in range(rounds):
            started = time.perf_counter()
            scan_proc()
            scans.append(time.perf_counter() - started)
        if reported != n:
            r.info("  pods in /stats/summary (running: 500)", f"{reported}  <- deleted pods still listed")
        r.ms(f"6 /stats/summary cold ({reported} pods)", samples["summary"], 100, 100)
        r.ms("6 /metrics/resource cold", samples["resource"], 100, 100)
        r.ms("  /stats/summary from the cache", samples["warm"])
        r.info("  vkcmd CPU per cold pair of requests", f"{stats_cpu / rounds * 1000:.0f} ms")
        r.ms("  floor: /healthz on the same connection", samples["healthz"])
        r.ms("  floor: one /proc scan (bench_kubeletapi.scan_proc)", scans)
        self.settle()

    # --- 8 and 9 ----------------------------------------------------------------------------
    def fig8_9(self) -> None:
        n, first, threads = self.args.pods, min(500, self.args.pods), 8
        print(f"[9] start CPU per pod: {first} pods, then up to {n} (`sleep`, Always)", flush=True)
        names = [f"f8-{i:04d}" for i in range(n)]
        steps = []  # (pods before, pods after, vkcmd CPU, kubelite CPU, wall)
        for lo, hi in ((0, first), (first, max(first, n - first)), (max(first, n - first), n)):
            if hi <= lo:
                continue
            batch = names[lo:hi]
            cpu0, t0 = self.cpu(), time.perf_counter()
            run_parallel(batch, lambda name: self.create(pod_manifest(name, ["sleep", "3600"], node=self.node.name,
                                                                      restart="Always")), threads)
            wall = self.watch.wait_all(batch, "Running", 60 + hi / 20) - t0
            time.sleep(2)  # trailing status writes and events of the batch
            cpu1 = self.cpu()
            steps.append((lo, hi, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], wall))
        r = self.report
        for lo, hi, vk, kl, wall in steps:
            r.info(f"9 pods {lo}->{hi} Running: vkcmd / kubelite CPU per pod",
                   f"{vk / (hi - lo) * 1000:.2f} / {kl / (hi - lo) * 1000:.2f} ms  ({wall:.1f} s)")
        if len(steps) > 1:
            flat = (steps[-1][2] / (steps[-1][1] - steps[-1][0])) / (steps[0][2] / (steps[0][1] - steps[0][0]))
            r.figure(f"9 start CPU per pod, last batch to {n} / first {first}", flat, 1.2, "x", "{:.2f}")

        print(f"[8] {n} running pods deleted at once (default grace, {threads} threads) until all gone",
              flush=True)
        before = self.cp.counts()["status"]
        with self.spy("fig8-delete"):
            cpu0, t0 = self.cpu(), time.perf_counter()
            delete_pods(self.client, names, grace=None, threads=threads)
            issued = time.perf_counter() - t0
            try:
                last = self.watch.wait_all(names, "DELETED", 60 + n / 20) - t0
            except TimeoutError as error:
                last = float("inf")
                print(f"  {error}", flush=True)
            cpu1 = self.cpu()
        time.sleep(3)  # what the wave left to do (removals of detached pod directories, trailing writes)
        cpu3 = self.cpu()
        counts = self.cp.counts()
        writes = sum(counts["status"].get(name, 0) - before.get(name, 0) for name in names)
        self.settle()
        # The floor: what the API alone needs for the same ending (the client's DELETE, the node's final
        # status PATCH and DELETE grace 0), from as many threads, on pods bound to a node nobody runs.
        floor = [f"fl8-{i:04d}" for i in range(n)]
        run_parallel(floor, lambda name: self.create(pod_manifest(name, ["sleep", "3600"], node=NOWHERE,
                                                                  restart="Always")), threads)
        self.watch.wait_all(floor, "ADDED", 60 + n / 20)
        k0, f0 = self.cpu()[1], time.perf_counter()

        def api_end(name: str) -> None:
            self.client.delete(pod_path(name))
            self.client.patch(pod_path(name, "status"), {"status": {"phase": "Failed"}}, MERGE_PATCH)
            self.client.delete(pod_path(name), {"gracePeriodSeconds": 0})
        run_parallel(floor, api_end, threads)
        api_all = self.watch.wait_all(floor, "DELETED", 60 + n / 20) - f0
        api_cpu = self.cpu()[1] - k0
        r.figure(f"8 {n} running pods deleted at once: all gone", last, 6.0 * n / 2000 if n <= 2000 else 15.0 * n / 5000,
                 "s", "{:.2f}")
        r.info("  deletes issued", f"{issued:.2f} s")
        for mark in ("Deleting", "Failed", "DELETED"):
            times = sorted(t - t0 for name in names if (t := self.watch.when(name, mark)) is not None)
            if times:
                r.info(f"  {mark} seen at 10 / 50 / 90 / 100 %",
                       " / ".join(f"{times[min(len(times) - 1, int(q * len(times)))]:.1f}" for q in (.1, .5, .9, 1))
                       + f" s  ({len(times)} pods)")
        r.info("  CPU used: vkcmd / kubelite (of 2 cores x wall)",
               f"{cpu1[0] - cpu0[0]:.2f} / {cpu1[1] - cpu0[1]:.2f} s of {2 * last:.2f} s")
        r.info("  vkcmd CPU per pod deleted (and with the 3 s after)",
               f"{(cpu1[0] - cpu0[0]) / n * 1000:.2f} ms ({(cpu3[0] - cpu0[0]) / n * 1000:.2f} ms)")
        r.info("  status writes per pod during the wave (the terminated statuses)", f"{writes / n:.2f}")
        r.info(f"  floor: API-only ending x{n} ({threads} threads), kubelite CPU", f"{api_all:.2f} s, {api_cpu:.2f} s")

    # --- 7 ---------------------------------------------------------------------------------
    def fig7(self) -> None:
        n = 5 if self.args.quick else 20
        print(f"[7] status writes per pod life ({n} short pods, {n} long pods deleted)", flush=True)
        short = [f"f7s-{i:02d}" for i in range(n)]
        for name in short:
            self.create(pod_manifest(name, ["true"], node=self.node.name))
            self.watch.wait(name, "Succeeded")
            time.sleep(0.2)
            self.client.delete(pod_path(name))
            self.watch.wait(name, "DELETED")
        long_ = [f"f7l-{i:02d}" for i in range(n)]
        for name in long_:
            self.create(pod_manifest(name, ["sleep", "3600"], node=self.node.name, restart="Always"))
            self.watch.wait(name, "Running")
            time.sleep(0.5)
            self.client.delete(pod_path(name))
            self.watch.wait(name, "DELETED")
        counts = self.cp.counts()
        r = self.report
        for label, names in (("short pod (`true`, Never), deleted", short), ("long pod (`sleep`), deleted", long_)):
            writes = [counts["status"].get(name, 0) for name in names]
            noop = sum(counts["noop"].get(name, 0) for name in names)
            failed = sum(counts["failed"].get(name, 0) for name in names)
            r.figure(f"7 status writes per life: {label} (max)", max(writes), 4, "writes", "{:.0f}")
            r.info("  mean / changed nothing / refused", f"{sum(writes) / n:.2f} / {noop} / {failed}")
        self.settle()


class PySpy:
    """py-spy recording of vkcmd during one figure (when asked)."""

    def __init__(self, directory: str | None, pid: int, label: str, gil: bool = False, idle: bool = False) -> None:
        self.directory, self.pid, self.label, self.gil, self.idle = directory, pid, label, gil, idle
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> PySpy:
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
        if self.directory and spy:
            out = Path(self.directory) / f"{self.label}.txt"
            self.process = subprocess.Popen([spy, "record", "--pid", str(self.pid), "--rate", "250",
                                             "--format", "raw", "--threads", "--nonblocking",
                                             *(["--gil"] if self.gil else []), *(["--idle"] if self.idle else []),
                                             "--output", str(out)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller N and shorter windows")
    parser.add_argument("--only", default="1,2,3,4,5,7", help="figures to run (6 runs with 5, 9 with 8)")
    parser.add_argument("--py-spy", dest="py_spy", default=None, help="record vkcmd with py-spy into this dir")
    parser.add_argument("--py-spy-gil", dest="py_spy_gil", action="store_true",
                        help="with --py-spy: sample only the thread holding the GIL (where the CPU goes)")
    parser.add_argument("--py-spy-idle", dest="py_spy_idle", action="store_true",
                        help="with --py-spy: sample waiting threads too (where the wall time goes)")
    parser.add_argument("--pods", type=int, default=2000, help="pods of figures 8 and 9 (VK_PODS is raised)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) at the end")
    parser.add_argument("--verbosity", type=int, default=2, help="vkcmd --klog.v")
    args = parser.parse_args(argv)
    wanted = {int(f) for f in args.only.split(",") if f}
    if args.py_spy:
        os.makedirs(args.py_spy, exist_ok=True)
    others = len(marked_processes())
    if others:
        print(f"note: {others} VKCMD_RUN processes of another vkcmd run on this machine (left alone)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-pods-"))
    started = time.monotonic()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "vkcmd"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip())
    print(f"bench_pods: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, commit {commit}"
          f"{' (vkcmd/ modified)' if dirty else ''}, {'quick' if args.quick else 'full'}, workdir {workdir}, "
          f"loadavg {os.getloadavg()[0]:.2f}", flush=True)
    bench = None
    try:
        with ControlPlaneProcess(workdir) as cp, VkNode(cp, workdir, verbosity=args.verbosity,
                                                             VK_PODS=str(max(1000, args.pods + 100))) as node, \
                PodWatch(node.client) as watch:
            bench = Bench(args, cp, node, watch, workdir)
            for number, run in ((1, bench.fig1), (2, bench.fig2), (7, bench.fig7), (3, bench.fig3),
                                (4, bench.fig4), (5, bench.fig5_6), (8, bench.fig8_9)):
                if number in wanted:
                    with bench.spy(f"fig{number}"):
                        run()
            clean_namespace(node.client)
    finally:
        left = marked_processes(workdir / "home")  # ours only: their HOME is our temp dir
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        print(f"cleanup: {len(left)} VKCMD_RUN process(es) left behind"
              f"{' (killed)' if left else ''}; total {time.monotonic() - started:.0f} s; "
              f"loadavg {os.getloadavg()[0]:.2f}", flush=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
    if bench is not None:
        misses = [row for row in bench.report.rows if row[3] == "MISS"]
        print(f"{len(misses)} MISS of {sum(1 for row in bench.report.rows if row[3])} figures")
        return 1 if misses else 0
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
