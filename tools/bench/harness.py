"""Shared pieces of the pod benchmarks (SPEC §8): a control plane in its own process, a real node, a watcher.

- :class:`ControlPlaneProcess` runs kubelite in a child process (as a real
  apiserver is one), with a hook that counts writes of ``pods/status`` per pod
  (and those that changed nothing); ask it with :meth:`~ControlPlaneProcess.counts`.
  ``python -m tools.bench.harness serve --dir DIR`` is that child.
- :class:`VkNode` is a real ``python -m vkcmd`` joined to it (HOME and
  workspace in a temp dir, like ``tests/e2e/node.py``).
- :class:`PodWatch` follows one watch on pods and stamps (perf_counter) the
  first time each pod is seen ADDED / in each phase / DELETED.
- floors, percentiles, the figure printer, and :func:`marked_processes` (the
  VKCMD_RUN leftovers check).

Nothing here knows vkcmd's internals; it talks to vkcmd only through the API.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.procs import free_port, kill_groups, processes_with, wait_until  # noqa: E402
from vkcmd.kube.client import ApiError, KubeClient, path  # noqa: E402

TOLERATION = {"key": "virtual-kubelet.io/provider", "value": "mock", "effect": "NoSchedule"}


# --- numbers ---------------------------------------------------------------------------------

def pct(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (the same rule as the other benches)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Report:
    """Collects figure lines: name, measured, target, PASS/MISS (or info), printed as they come."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def figure(self, name: str, value: float, target: float, unit: str, fmt: str = "{:.1f}") -> bool:
        ok = value <= target
        self._add(name, fmt.format(value) + f" {unit}", f"<= {fmt.format(target)} {unit}", "PASS" if ok else "MISS")
        return ok

    def info(self, name: str, text: str) -> None:
        self._add(name, text, "", "")

    def _add(self, name: str, value: str, target: str, verdict: str) -> None:
        self.rows.append((name, value, target, verdict))
        print(f"  {name:<48} {value:>22}  {target:>16}  {verdict}", flush=True)

    def ms(self, name: str, samples: list[float], p50: float | None = None, p99: float | None = None) -> None:
        """p50/p99 in ms of ``samples`` (seconds), against targets in ms when given."""
        v50, v99 = pct(samples, 50) * 1000, pct(samples, 99) * 1000
        if p50 is not None:
            self.figure(f"{name} p50", v50, p50, "ms")
            self.figure(f"{name} p99", v99, p99, "ms")
        else:
            self.info(name, f"p50 {v50:.1f} ms  p99 {v99:.1f} ms  (n={len(samples)})")


# --- processes -------------------------------------------------------------------------------

def marked_processes(home: str | Path | None = None) -> list[int]:
    """Pids of live processes carrying a VKCMD_RUN marker; with ``home``, only those whose environment
    has ``HOME=<home>``: the pods of *our* node, never those of another vkcmd on the same machine."""
    return processes_with({"VKCMD_RUN": None, **({"HOME": str(home)} if home is not None else {})})


def kill_marked(home: str | Path) -> list[int]:
    """SIGKILL every live process carrying a VKCMD_RUN marker and ``HOME=<home>`` (a bench's leftovers);
    returns their pids."""
    left = marked_processes(home)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


# --- the control plane in its own process ----------------------------------------------------

class ControlPlaneProcess:
    """kubelite in a child process; line-JSON commands on its stdin/stdout."""

    def __init__(self, directory: Path, scheduler: bool = True) -> None:
        self.dir = Path(directory)
        self.scheduler = scheduler
        self.process: subprocess.Popen | None = None
        self.kubeconfig = ""
        self.url = ""
        self._lock = threading.Lock()

    def __enter__(self) -> ControlPlaneProcess:
        argv = [sys.executable, "-m", "tools.bench.harness", "serve", "--dir", str(self.dir)]
        if not self.scheduler:
            argv.append("--no-scheduler")
        self._log = open(self.dir / "kubelite.log", "ab")
        self.process = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._log, text=True, bufsize=1)
        hello = json.loads(self.process.stdout.readline() or "{}")
        if "kubeconfig" not in hello:
            raise RuntimeError(f"kubelite did not start; see {self.dir / 'kubelite.log'}")
        self.kubeconfig, self.url = hello["kubeconfig"], hello["url"]
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def call(self, op: str, **args: Any) -> Any:
        with self._lock:
            self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.process.stdin.flush()
            return json.loads(self.process.stdout.readline())

    def counts(self) -> dict[str, dict[str, int]]:
        """{"status": {pod: writes}, "noop": {pod: of those, changed nothing}, "failed": {pod: refused}}."""
        return self.call("counts")

    def client_cert(self, cn: str, groups: list[str]) -> tuple[str, str]:
        answer = self.call("cert", cn=cn, groups=groups)
        return answer["cert"], answer["key"]

    def __exit__(self, *exc: Any) -> None:
        if self.process is None:
            return
        try:
            self.call("stop")
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        self.process = None


def serve(directory: str, scheduler: bool) -> int:
    """The child: run kubelite, count pods/status writes, answer commands until "stop"."""
    import logging

    from tools.kubelite import ControlPlane

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cp = ControlPlane(directory, scheduler=scheduler)
    cp.start()
    status: dict[str, int] = {}
    noop: dict[str, int] = {}
    failed: dict[str, int] = {}
    lock = threading.Lock()
    original = cp.api.write

    def counting_write(res, ns, name, sub, compute, **kwargs):  # the server calls api.write for PUT and PATCH
        if res.plural != "pods" or res.group or sub != "status":
            return original(res, ns, name, sub, compute, **kwargs)
        before = cp.store.get(res.key, ns, name)
        try:
            entry = original(res, ns, name, sub, compute, **kwargs)
        except Exception:
            with lock:
                status[name] = status.get(name, 0) + 1
                failed[name] = failed.get(name, 0) + 1
            raise
        with lock:
            status[name] = status.get(name, 0) + 1
            if before is not None and entry.rv == before.rv:
                noop[name] = noop.get(name, 0) + 1
        return entry

    cp.api.write = counting_write
    print(json.dumps({"url": cp.url, "kubeconfig": cp.kubeconfig, "pid": os.getpid()}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            op = command["op"]
            if op == "counts":
                with lock:
                    answer: Any = {"status": dict(status), "noop": dict(noop), "failed": dict(failed)}
            elif op == "cert":
                pair = cp.issue_client_cert(command["cn"], command["groups"])
                cert, key = Path(directory) / f"{command['cn']}.crt", Path(directory) / f"{command['cn']}.key"
                cert.write_bytes(pair.cert_pem)
                key.write_bytes(pair.key_pem)
                os.chmod(key, 0o600)
                answer = {"cert": str(cert), "key": str(key)}
            elif op == "node-kubeconfig":  # the kubelet identity system:node:<name> (Node authorizer)
                answer = {"kubeconfig": cp.node_kubeconfig(str(Path(directory) / f"{command['node']}.kubeconfig"),
                                                           command["node"])}
            elif op == "watchers":  # open watches per collection (the store's fan-out per change)
                with cp.store._lock:
                    answer = {key: len(b.watchers) for key, b in cp.store._buckets.items() if b.watchers}
            elif op == "stop":
                print(json.dumps({"ok": True}), flush=True)
                break
            else:
                answer = {"error": f"unknown op {op}"}
            print(json.dumps(answer), flush=True)
    finally:
        cp.stop()
    return 0


# --- the node ----------------------------------------------------------------------------------

class VkNode:
    """A real ``python -m vkcmd`` against the control plane; drained (SIGTERM) on exit."""

    def __init__(self, cp: ControlPlaneProcess, workdir: Path, name: str = "vk-bench", verbosity: int = 2,
                 **env: str) -> None:
        self.name = name
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        self.verbosity = verbosity
        self.env = {**os.environ, "KUBECONFIG": cp.kubeconfig, "NODENAME": name, "HOME": str(self.home),
                    "VKUBELET_POD_IP": "127.0.0.1", "KUBELET_PORT": str(self.port), "JIRIAF_WALLTIME": "0",
                    "JIRIAF_NODETYPE": "cpu", "JIRIAF_SITE": "Local", **env}
        self.client = KubeClient.from_kubeconfig(cp.kubeconfig)
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> VkNode:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "vkcmd", "--klog.v", str(self.verbosity)], cwd=REPO,
                                        env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(self.ready, 30, f"node {self.name} Ready")
        return self

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"vkcmd exited with {self.process.returncode}; see {self.log_path}")
        try:
            node = self.client.get(path(resource="nodes", name=self.name))
        except ApiError:
            return False
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))

    def __exit__(self, *exc: Any) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self.client.close()
        self.process = None


def pod_manifest(name: str, command: list[str], *, node: str | None, restart: str = "Never",
                 grace: int | None = None, labels: dict[str, str] | None = None) -> dict:
    """A pod running ``command`` with no script; bound to ``node``, or placed through the scheduler."""
    spec: dict[str, Any] = {"restartPolicy": restart, "tolerations": [TOLERATION],
                            "containers": [{"name": "c", "image": "none", "command": command}]}
    if node:
        spec["nodeName"] = node
    else:
        spec["nodeSelector"] = {"kubernetes.io/role": "agent"}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": "bench"}},
            "spec": spec}


# --- the watcher ---------------------------------------------------------------------------------

class PodWatch:
    """One watch on the pods of a namespace; first-seen times (perf_counter) per pod and mark.

    Marks: "ADDED", "DELETED", each phase ("Pending", "Running", "Succeeded", "Failed"), and
    "Scheduled" (spec.nodeName set). ``on_event(mark, name, pod)`` runs on the watch thread for
    every first-seen mark.
    """

    def __init__(self, client: KubeClient, namespace: str = "default",
                 on_event: Callable[[str, str, dict], None] | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.on_event = on_event
        self.seen: dict[tuple[str, str], float] = {}
        self.events = 0
        self._cond = threading.Condition()
        self._stream = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    def __enter__(self) -> PodWatch:
        answer = self.client.get(path(resource="pods", namespace=self.namespace), limit=1)
        version = answer["metadata"]["resourceVersion"]
        self._stream = self.client.watch(path(resource="pods", namespace=self.namespace),
                                         resource_version=version, timeout_seconds=3600)
        self._thread = threading.Thread(target=self._run, name="bench-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        for event in self._stream:
            now = time.perf_counter()
            kind = event.get("type")
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue
            pod = event["object"]
            name = pod["metadata"]["name"]
            marks = [kind] if kind != "MODIFIED" else []
            phase = (pod.get("status") or {}).get("phase")
            if phase:
                marks.append(phase)
            if (pod.get("spec") or {}).get("nodeName"):
                marks.append("Scheduled")
            if pod["metadata"].get("deletionTimestamp"):
                marks.append("Deleting")
            fresh = []
            with self._cond:
                self.events += 1
                for mark in marks:
                    if (name, mark) not in self.seen:
                        self.seen[(name, mark)] = now
                        fresh.append(mark)
                self._cond.notify_all()
            if self.on_event is not None:
                for mark in fresh:
                    self.on_event(mark, name, pod)
        if not self._stopped:
            print("  (bench watch ended unexpectedly)", file=sys.stderr)

    def when(self, name: str, mark: str) -> float | None:
        with self._cond:
            return self.seen.get((name, mark))

    def wait(self, name: str, mark: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        with self._cond:
            while (name, mark) not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"pod {name} not seen {mark} within {timeout:.0f}s")
                self._cond.wait(left)
            return self.seen[(name, mark)]

    def wait_all(self, names: Iterable[str], mark: str, timeout: float) -> float:
        """The latest first-seen time of ``mark`` over ``names``."""
        names = list(names)
        deadline = time.monotonic() + timeout
        missing = names
        with self._cond:
            while True:
                missing = [n for n in missing if (n, mark) not in self.seen]  # shrinks: O(n) over the wait
                if not missing:
                    return max(self.seen[(n, mark)] for n in names)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(missing)} of {len(names)} pods not seen {mark} within "
                                       f"{timeout:.0f}s (e.g. {missing[:3]})")
                self._cond.wait(min(left, 1.0))

    def count(self, mark: str, names: Iterable[str]) -> int:
        with self._cond:
            return sum(1 for n in names if (n, mark) in self.seen)

    def __exit__(self, *exc: Any) -> None:
        self._stopped = True
        if self._stream is not None:
            self._stream.close()
        if self._thread is not None:
            self._thread.join(5)


# --- pods in bulk -------------------------------------------------------------------------------

def run_parallel(items: list, action: Callable[[Any], Any], threads: int) -> list:
    """``action(item)`` for every item from ``threads`` threads; results in item order; errors re-raised."""
    results: list = [None] * len(items)
    errors: list[BaseException] = []
    lock = threading.Lock()
    cursor = iter(range(len(items)))

    def worker() -> None:
        while True:
            with lock:
                index = next(cursor, None)
            if index is None or errors:
                return
            try:
                results[index] = action(items[index])
            except BaseException as error:  # noqa: BLE001 (re-raised in the caller)
                errors.append(error)
                return

    pool = [threading.Thread(target=worker, name=f"bench-worker-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if errors:
        raise errors[0]
    return results


def delete_pods(client: KubeClient, names: Iterable[str], grace: int | None = 0, namespace: str = "default",
                threads: int = 4) -> None:
    body = {"gracePeriodSeconds": grace} if grace is not None else None

    def delete(name: str) -> None:
        try:
            client.delete(path(resource="pods", namespace=namespace, name=name), body)
        except ApiError as error:
            if not error.not_found:
                raise
    run_parallel(list(names), delete, threads)


def pods_left(client: KubeClient, namespace: str = "default") -> list[str]:
    return [p["metadata"]["name"] for p in client.get(path(resource="pods", namespace=namespace)).get("items", [])]


def clean_namespace(client: KubeClient, timeout: float = 90.0, namespace: str = "default") -> None:
    """Delete every pod of the namespace (grace 0) and wait until the API and vkcmd are done with them."""
    names = pods_left(client, namespace)
    if names:
        delete_pods(client, names, grace=0, namespace=namespace)
    wait_until(lambda: not pods_left(client, namespace), timeout, "every bench pod deleted", interval=0.2)


# --- floors ------------------------------------------------------------------------------------------

def floor_spawn(n: int, argv: list[str]) -> tuple[list[float], list[subprocess.Popen]]:
    """Bare spawn of ``argv`` in a new session until /proc shows it exec'd; the processes stay running."""
    times, processes = [], []
    target = os.path.basename(argv[0]).encode()
    for _ in range(n):
        t0 = time.perf_counter()
        process = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                if Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")[0].endswith(target):
                    break
            except OSError:
                pass
        times.append(time.perf_counter() - t0)
        processes.append(process)
    return times, processes


kill_all = kill_groups  # the bench's name for it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.harness")
    sub = parser.add_subparsers(dest="command", required=True)
    child = sub.add_parser("serve", help="run kubelite with the status-write counter (the bench's child)")
    child.add_argument("--dir", required=True)
    child.add_argument("--no-scheduler", action="store_true")
    args = parser.parse_args(argv)
    return serve(args.dir, not args.no_scheduler)


if __name__ == "__main__":
    raise SystemExit(main())
