"""The API server out of reach: pods keep running, vkcmd retries, and converges when it returns."""

from __future__ import annotations

import os
import time

import pytest
import yaml

from tests.e2e.node import Node, container_state, pod_manifest, wait_for
from tests.e2e.proxy import Relay
from vkcmd.timefmt import parse_time


def node_via_relay(plane, tmp_path, name: str, **env: str) -> tuple[Node, Relay]:
    """A node (not started) whose kubeconfig points at a relay to ``plane`` that the test can cut."""
    relay = Relay(plane.port)
    config = yaml.safe_load(open(plane.kubeconfig))
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
    kubeconfig = tmp_path / "via-relay.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    return Node(plane, tmp_path, name=name, KUBECONFIG=str(kubeconfig), **env), relay


def test_pods_survive_an_api_outage_and_status_converges(control_plane, tmp_path, namespace):
    node, relay = node_via_relay(control_plane, tmp_path, "vk-outage", VK_LEASE_RENEW_INTERVAL="1")
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

    node, relay = node_via_relay(control_plane, tmp_path, "vk-outage-term")
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


@pytest.fixture(scope="module")
def quick_lifecycle(tmp_path_factory):
    """A control plane whose node lifecycle controller marks a node Unknown 4 s after its last lease renewal."""
    from tools.kubelite import ControlPlane

    with ControlPlane(str(tmp_path_factory.mktemp("kubelite-quick")), lease_grace=4.0) as cp:
        yield cp


def test_ready_returns_as_soon_as_the_api_does_after_the_lifecycle_controller_said_unknown(quick_lifecycle,
                                                                                            tmp_path):
    """After an outage long enough for Ready=Unknown, vkcmd writes Ready=True at once (the API's view differs
    from the truth), not at the next status interval (300 s by default, as here)."""
    node, relay = node_via_relay(quick_lifecycle, tmp_path, "vk-unknown", VK_LEASE_RENEW_INTERVAL="1")
    node.start()
    try:
        relay.cut()
        wait_for(lambda: _ready_status(node) == "Unknown", timeout=30, what="Ready=Unknown from the controller")
        time.sleep(2)
        restored = time.monotonic()
        relay.restore()
        wait_for(lambda: _ready_status(node) == "True", timeout=30, what="Ready=True after the outage")
        assert time.monotonic() - restored < 30
        assert node.process.poll() is None, node.log()
        taints = [t["key"] for t in node.client.get(f"/api/v1/nodes/{node.name}")["spec"].get("taints") or []]
        wait_for(lambda: "node.kubernetes.io/unreachable" not in [
            t["key"] for t in node.client.get(f"/api/v1/nodes/{node.name}")["spec"].get("taints") or []],
            timeout=15, what=f"unreachable taint removed (had {taints})")
    finally:
        assert node.stop() == 0, node.log()
        relay.stop()


def _ready_status(node: Node) -> str | None:
    conditions = node.client.get(f"/api/v1/nodes/{node.name}").get("status", {}).get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == "Ready"), None)
