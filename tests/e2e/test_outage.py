"""The API server out of reach: pods keep running, vkcmd retries, and converges when it returns."""

from __future__ import annotations

import os
import time

import yaml

from tests.e2e.node import Node, container_state, pod_manifest, wait_for
from tests.e2e.proxy import Relay
from vkcmd.timefmt import parse_time


def test_pods_survive_an_api_outage_and_status_converges(control_plane, tmp_path, namespace):
    relay = Relay(control_plane.port)
    config = yaml.safe_load(open(control_plane.kubeconfig))
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
    kubeconfig = tmp_path / "via-relay.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    node = Node(control_plane, tmp_path, name="vk-outage", KUBECONFIG=str(kubeconfig),
                VK_LEASE_RENEW_INTERVAL="1")
    node.start()
    try:
        node.create(pod_manifest("steady", ["sleep", "1000"]), namespace)
        node.create(pod_manifest("ends-in-outage", ["sh", "-c", "sleep 3; exit 4"]), namespace)
        steady = node.wait_phase("steady", phases=("Running",), namespace=namespace)
        node.wait_phase("ends-in-outage", phases=("Running",), namespace=namespace)
        pgid = int(container_state(steady)["containerID"].removeprefix("vkcmd://"))
        relay.cut()
        time.sleep(6)  # "ends-in-outage" exits while the API is unreachable
        assert os.getpgid(pgid) == pgid  # the steady pod's processes kept running
        assert node.process.poll() is None, node.log()
        cut_at = time.time()
        relay.restore()
        ended = node.wait_phase("ends-in-outage", namespace=namespace, timeout=45)
        assert (ended["status"]["phase"], container_state(ended)["state"]["terminated"]["exitCode"]) == ("Failed", 4)
        lease = node.client.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node.name}")
        wait_for(lambda: parse_time(node.client.get(
            f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node.name}")["spec"]["renewTime"])
            >= int(cut_at), timeout=30, what="lease renewed after the outage")
        assert lease
        assert node.pod("steady", namespace)["status"]["phase"] == "Running"
        assert container_state(node.pod("steady", namespace))["restartCount"] == 0
    finally:
        assert node.stop() == 0, node.log()
        relay.stop()


def test_sigterm_during_an_outage_still_ends_pods_and_exits(control_plane, tmp_path, namespace):
    import signal

    relay = Relay(control_plane.port)
    config = yaml.safe_load(open(control_plane.kubeconfig))
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
    kubeconfig = tmp_path / "via-relay.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    node = Node(control_plane, tmp_path, name="vk-outage-term", KUBECONFIG=str(kubeconfig))
    node.start()
    try:
        node.create(pod_manifest("stranded", ["sleep", "1000"]), namespace)
        pod = node.wait_phase("stranded", phases=("Running",), namespace=namespace)
        pgid = int(container_state(pod)["containerID"].removeprefix("vkcmd://"))
        relay.cut()
        started = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        code = node.process.wait(timeout=90)
        elapsed = time.monotonic() - started
        assert code == 0, node.log()
        # it must not hang: the grace of a process that ends on SIGTERM, then 15 s of patience
        assert elapsed < 60, f"exit took {elapsed:.1f}s:\n{node.log()[-3000:]}"
        assert "giving up on writing the final status" in node.log(), node.log()[-3000:]
        wait_for(lambda: not [p for p in node.processes() if _pgid(p) == pgid], what="pod processes gone")
        assert node.log().count("Retrying (Retry(") == 0, node.log()[-3000:]
    finally:
        node.stop()
        relay.stop()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
