"""Benchmark of kubectl exec and port-forward through the local control plane to a real node (issue 14).

Prints the exec round trip (p50/p90 over N ``kubectl exec … true``) and the
port-forward throughput (MB/s of a bulk download through ``kubectl
port-forward``, over SPDY and over kubectl's WebSocket tunnel) beside a direct
loopback copy of the same bytes.

    .venv/bin/python -m tools.bench.bench_exec [--execs 50] [--megabytes 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.bench.harness import ControlPlaneProcess, VkNode, pct, pod_manifest
from tools.procs import connects, free_port, wait_until
from vkcmd.kube.client import path

SPDY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false", "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}
SOURCE = """
import socket, sys
size = int(sys.argv[2]) << 20
block = b"x" * (1 << 20)
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = server.accept()
    sent = 0
    try:
        while sent < size:
            conn.sendall(block)
            sent += len(block)
    except OSError:
        pass  # a client that only checked the port
    conn.close()
"""


def _drain(port: int) -> tuple[int, float]:
    started = time.perf_counter()
    total = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            total += len(data)
    return total, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=50)
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args(argv)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("kubectl is not installed", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-exec-"))
    env = {**os.environ, **SPDY}
    try:
        with ControlPlaneProcess(work) as cp, VkNode(cp, work) as node:
            pod_port = free_port()
            script = work / "source.py"
            script.write_text(SOURCE)
            node.client.create(path(resource="pods", namespace="default"),
                             pod_manifest("bench-exec", [sys.executable, str(script), str(pod_port),
                                                         str(args.megabytes)], node=node.name))
            wait_until(lambda: connects(pod_port), 30, "the pod serves")
            pod = path(resource="pods", namespace="default", name="bench-exec")
            wait_until(lambda: node.client.get(pod).get("status", {}).get("phase") == "Running", 30, "Running")
            base = [kubectl, "--kubeconfig", cp.kubeconfig]
            times = []
            for _ in range(args.execs):
                started = time.perf_counter()
                done = subprocess.run([*base, "exec", "bench-exec", "--", "true"], env=env, capture_output=True,
                                      text=True, timeout=30)
                if done.returncode != 0:
                    raise RuntimeError(f"kubectl exec failed: {done.stderr.strip()}")
                times.append(time.perf_counter() - started)
            direct_bytes, direct_s = _drain(pod_port)
            forwarded = {}
            for transport, websocket in (("SPDY", "false"), ("WebSocket", "true")):  # kubectl's two paths
                local = free_port()
                forward = subprocess.Popen([*base, "port-forward", "pod/bench-exec", f"{local}:{pod_port}"],
                                           env={**env, "KUBECTL_PORT_FORWARD_WEBSOCKETS": websocket},
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_until(lambda: connects(local), 30, "kubectl port-forward listens")
                    forwarded[transport] = _drain(local)
                finally:
                    forward.terminate()
                    forward.wait(10)
            node.client.delete(pod, {"gracePeriodSeconds": 0})
        print(f"load average (1 min): {os.getloadavg()[0]:.1f}")
        print(f"exec round trip over {args.execs} kubectl exec … true: p50 {pct(times, 50) * 1000:.0f} ms, "
              f"p90 {pct(times, 90) * 1000:.0f} ms")
        for transport, (forwarded_bytes, forwarded_s) in forwarded.items():
            print(f"port-forward ({transport}): {forwarded_bytes / forwarded_s / 1e6:.1f} MB/s "
                  f"({forwarded_bytes >> 20} MiB in {forwarded_s:.2f} s)")
        print(f"direct loopback: {direct_bytes / direct_s / 1e6:.1f} MB/s "
              f"({direct_bytes >> 20} MiB in {direct_s:.2f} s)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
