"""What the node's per-object reads cost at 1000 pods, each with its own ConfigMap and Secret (issue 12).

kubelite runs in its own process; this process is the node side: a real
:class:`vkcmd.kube.objects.ClusterObjects` told of 1000 pods (as the pod watch
would), reading their 2000 objects one by one through the real client. Printed:
sockets, threads and RSS of this process, the time until every object is read,
and the GETs of one TTL refresh round.

    .venv/bin/python -m tools.bench.bench_objects [--pods 1000] [--ttl 20]
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

from tools.bench.harness import ControlPlaneProcess, Report  # noqa: E402
from vkcmd.kube.client import KubeClient, path  # noqa: E402
from vkcmd.kube.objects import ClusterObjects  # noqa: E402
from vkcmd.pods.errors import ConfigError  # noqa: E402

NAMESPACE = "bench-objects"


def pod(i: int) -> dict:
    return {"metadata": {"name": f"p{i}", "namespace": NAMESPACE, "uid": f"uid-{i}"},
            "spec": {"volumes": [{"name": "c", "configMap": {"name": f"cm-{i}"}},
                                 {"name": "s", "secret": {"secretName": f"s-{i}"}}],
                     "containers": [{"name": "c", "image": "none"}]}}


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
    parser.add_argument("--ttl", type=float, default=20.0, help="refresh interval of the cache (s)")
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
        sockets = len([c for c in me.net_connections("tcp") if c.raddr and c.raddr[1] == int(cp.url.rsplit(":", 1)[1])])
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
