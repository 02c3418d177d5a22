"""What the node's per-object reads cost at 1000 pods, each with its own ConfigMap and Secret (issue 12).

kubelite runs in its own process; this process is the node side: a real
:class:`vkcmd.kube.objects.ClusterObjects` told of 1000 pods (as the pod watch
would), reading their 2000 objects one by one through the real client. Printed:
sockets, threads and RSS of this process, the time until every object is read,
and the GETs of one TTL refresh round. With ``--node``, a real ``python -m vkcmd`` runs
the pods (each `sleep`, its script env from its own ConfigMap and Secret) and the
figures are vkcmd's own: sockets to the API server, threads and RSS, with no pod
and with all of them Running.

    .venv/bin/python -m tools.bench.bench_objects [--pods 1000] [--ttl 20] [--node]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.bench.harness import TOLERATION, ControlPlaneProcess, PodWatch, Report, VkNode  # noqa: E402
from vkcmd.kube.client import KubeClient, path  # noqa: E402
from vkcmd.kube.objects import ClusterObjects  # noqa: E402
from vkcmd.pods.errors import ConfigError  # noqa: E402

NAMESPACE = "bench-objects"


def pod(i: int) -> dict:
    return {"metadata": {"name": f"p{i}", "namespace": NAMESPACE, "uid": f"uid-{i}"},
            "spec": {"volumes": [{"name": "c", "configMap": {"name": f"cm-{i}"}},
                                 {"name": "s", "secret": {"secretName": f"s-{i}"}}],
                     "containers": [{"name": "c", "image": "none"}]}}


def api_sockets(process: psutil.Process, url: str) -> int:
    port = int(url.rsplit(":", 1)[1])
    return len([c for c in process.net_connections("tcp") if c.raddr and c.raddr[1] == port])


def node_run(args: argparse.Namespace, cp: ControlPlaneProcess, admin: KubeClient, workdir: Path,
             report: Report) -> None:
    """A real node running the pods: vkcmd's sockets, threads and RSS, before and with all Running."""
    env = {}
    if args.identity == "node":  # as a kubelet joins: system:node:<name>, under the Node authorizer
        env["KUBECONFIG"] = cp.call("node-kubeconfig", node="vk-objects")["kubeconfig"]
    with VkNode(cp, workdir, name="vk-objects", **env) as node, PodWatch(admin, NAMESPACE) as watch:
        vk = psutil.Process(node.pid)
        time.sleep(2)
        before = (api_sockets(vk, cp.url), vk.num_threads(), vk.memory_info().rss)
        started = time.monotonic()
        created = {}
        for i in range(args.pods):
            created[i] = time.perf_counter()
            admin.create(path(resource="pods", namespace=NAMESPACE), {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}"},
                "spec": {"nodeName": node.name, "restartPolicy": "Never", "tolerations": [TOLERATION],
                         "containers": [{"name": "c", "image": "none", "command": ["sleep", "600"],
                                         "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {
                                             "name": f"cm-{i}", "key": "k"}}}],
                                         "envFrom": [{"secretRef": {"name": f"s-{i}"}}]}]}})

        def running() -> int:
            items = admin.get(path(resource="pods", namespace=NAMESPACE))["items"]
            return sum(1 for p in items if (p.get("status") or {}).get("phase") == "Running")

        while running() < args.pods and time.monotonic() - started < 600:
            time.sleep(2)
        elapsed = time.monotonic() - started
        starts = sorted(watch.when(f"p{i}", "Running") - created[i] for i in range(args.pods)
                        if watch.when(f"p{i}", "Running") is not None)
        time.sleep(args.ttl + 2)  # one refresh round of the 2N objects
        after = (api_sockets(vk, cp.url), vk.num_threads(), vk.memory_info().rss)
        report.figure(f"{args.pods} pods Running (own ConfigMap + Secret each)", elapsed, 600.0, "s")
        report.info("vkcmd sockets to the API server", f"{before[0]} -> {after[0]}")
        report.info("identity", args.identity)
        report.figure("vkcmd sockets to the API server with the pods", after[0], 16, "", "{:.0f}")
        report.info("vkcmd threads", f"{before[1]} -> {after[1]}")
        report.figure("vkcmd threads with the pods", after[1], 40, "", "{:.0f}")
        report.info("vkcmd RSS", f"{before[2] / 2 ** 20:.0f} -> {after[2] / 2 ** 20:.0f} MiB")
        report.figure("vkcmd RSS with the pods", after[2] / 2 ** 20, 200, "MiB", "{:.0f}")
        if starts:
            report.info("create -> Running seen p50 / p90 (every pod)",
                        f"{starts[len(starts) // 2]:.2f} / {starts[int(len(starts) * .9)]:.2f} s")
        admin.delete(path(resource="namespaces", name=NAMESPACE))


def all_read(objects: ClusterObjects, pods: int) -> bool:
    for i in range(pods):
        try:
            objects.config_map(NAMESPACE, f"cm-{i}")
            objects.secret(NAMESPACE, f"s-{i}")
        except ConfigError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--ttl", type=float, default=20.0, help="refresh interval of the in-process cache; with --node, how long to wait after all are Running (vkcmd refreshes every 60 s)")
    parser.add_argument("--node", action="store_true", help="a real vkcmd node runs the pods")
    parser.add_argument("--identity", choices=("node", "admin"), default="node",
                        help="with --node: vkcmd as system:node:<name> (SPEC 9, the default) or with the admin kubeconfig")
    args = parser.parse_args(argv)
    report = Report()
    me = psutil.Process()
    with tempfile.TemporaryDirectory() as workdir, ControlPlaneProcess(Path(workdir), scheduler=False) as cp:
        admin = KubeClient.from_kubeconfig(cp.kubeconfig)
        admin.create(path(resource="namespaces"), {"metadata": {"name": NAMESPACE}})
        for i in range(args.pods):
            admin.create(path(resource="configmaps", namespace=NAMESPACE),
                         {"metadata": {"name": f"cm-{i}"}, "data": {"k": "v" * 100}})
            admin.create(path(resource="secrets", namespace=NAMESPACE),
                         {"metadata": {"name": f"s-{i}"}, "stringData": {"k": "s" * 100}})
        if args.node:
            node_run(args, cp, admin, Path(workdir), report)
            admin.close()
            return 0 if all(row[3] != "MISS" for row in report.rows) else 1
        client = KubeClient.from_kubeconfig(cp.kubeconfig)
        base_rss, base_threads = me.memory_info().rss, threading.active_count()
        objects = ClusterObjects(client, ttl=args.ttl, fresh_for=args.ttl)
        objects.start()
        started = time.monotonic()
        for i in range(args.pods):
            objects.add_pod(pod(i))
        while not all_read(objects, args.pods):
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        sockets = api_sockets(me, cp.url)
        report.info("objects kept", str(objects.watched()))
        report.figure(f"time until {2 * args.pods} objects read", elapsed, 60.0, "s")
        report.figure("sockets to the API server", sockets, 40, "", "{:.0f}")
        report.figure("threads added", threading.active_count() - base_threads, 10, "", "{:.0f}")
        report.info("RSS added", f"{(me.memory_info().rss - base_rss) / 2 ** 20:.1f} MiB")
        fetched = objects.fetches
        time.sleep(args.ttl + 5)
        report.info(f"GETs in one refresh round ({args.ttl:.0f} s)", str(objects.fetches - fetched))
        for i in range(args.pods):
            objects.remove_pod(pod(i))
        report.info("objects kept after the pods left", str(objects.watched()))
        objects.stop()
        client.close()
        admin.close()
    return 0 if all(row[3] != "MISS" for row in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
