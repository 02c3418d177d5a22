"""The node against the local control plane: registration, lease, walltime, drain, adoption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.procs import wait_until
from vkcmd.kube.client import KubeClient, path
from vkcmd.kube.node import DRAIN_ANNOTATION, DRAIN_TAINT, NodeConfig, NodeController
from vkcmd.timefmt import parse_time
from vkcmd.machines import NodeState
from vkcmd.runtime.host import host_facts

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    return wait_until(predicate, timeout, what, interval)


@pytest.fixture
def client(control_plane):
    c = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    yield c
    c.close()


class NoPods:
    """The node's pod hook for tests of the node alone (pods are covered by the pod tests)."""

    def __init__(self):
        self.drained = []

    def start(self):
        pass

    def stop(self):
        pass

    def drain(self, reason, message, fast):
        self.drained.append((reason, fast))

    def hurry(self):
        pass

    def wait_drained(self, timeout):
        return True

    def max_grace_period(self):
        return 0.0


class Running:
    """A NodeController started in this process, stopped at teardown."""

    def __init__(self, client, config, facts=None, **kw):
        self.pods = NoPods()
        self.drain_requests = []
        self.node = NodeController(client, config, facts or host_facts(), self.pods,
                                   on_drain_request=lambda r, m: self.drain_requests.append((r, m)), **kw)

    def __enter__(self):
        self.pods.start()
        self.node.start()
        return self

    def __exit__(self, *exc):
        self.node.stop()
        self.pods.stop()


def config(name, **kw):
    base = dict(name=name, pod_ip="127.0.0.1", kubelet_port=10250, lease_renew_interval=0.2,
                status_interval=1.0, alivetime_interval=1.0, node_type="cpu", site="Local")
    base.update(kw)
    return NodeConfig(**base)


def get_node(client, name):
    return client.get(path(resource="nodes", name=name))


def get_lease(client, name):
    return client.get(path(group="coordination.k8s.io", resource="leases", namespace="kube-node-lease", name=name))


def test_registration_writes_the_node_as_specified(client):
    facts = host_facts()
    with Running(client, config("reg-a", walltime=0, kubelet_port=10255, max_pods=50)) as running:
        assert running.node.machine.state is NodeState.READY
        node = get_node(client, "reg-a")
    labels = node["metadata"]["labels"]
    assert labels["type"] == "virtual-kubelet"
    assert labels["kubernetes.io/role"] == "agent"
    assert labels["kubernetes.io/hostname"] == "reg-a"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] == facts.arch
    assert labels["jiriaf.nodetype"] == "cpu" and labels["jiriaf.site"] == "Local"
    assert "jiriaf.walltime" not in labels and "jiriaf.alivetime" not in labels
    assert {"key": "virtual-kubelet.io/provider", "value": "mock", "effect": "NoSchedule"} in node["spec"]["taints"]
    status = node["status"]
    assert status["capacity"]["cpu"] == str(facts.cpus)
    assert status["capacity"]["pods"] == "50"
    assert status["allocatable"]["memory"] == f"{facts.memory_bytes // 1024}Ki"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert any(a["type"] == "Hostname" for a in status["addresses"])
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10255
    assert "vkcmd" in status["nodeInfo"]["kubeletVersion"]
    assert status["nodeInfo"]["operatingSystem"] == "linux"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conditions[kind]["status"] == "False"
        assert conditions[kind]["lastHeartbeatTime"]


def test_capacity_overrides(client):
    with Running(client, config("reg-b", cpu="3", memory="5Gi")):
        status = get_node(client, "reg-b")["status"]
    assert status["capacity"]["cpu"] == "3" and status["capacity"]["memory"] == "5Gi"


def test_ephemeral_storage_is_the_workspace_filesystem(client, tmp_path):
    """capacity = the size of the filesystem holding the workspace root; allocatable keeps the 10 % reserve."""
    from vkcmd.pods.quantity import memory_bytes

    st = os.statvfs(tmp_path)
    size = st.f_blocks * st.f_frsize
    assert size > 0
    with Running(client, config("reg-disk"), facts=host_facts(str(tmp_path))):
        status = get_node(client, "reg-disk")["status"]
    capacity = memory_bytes(status["capacity"]["ephemeral-storage"])
    allocatable = memory_bytes(status["allocatable"]["ephemeral-storage"])
    assert abs(capacity - size) < 1024
    assert abs(allocatable - size * 0.9) < 2048
    with Running(client, config("reg-disk-set", ephemeral_storage="100Gi"), facts=host_facts(str(tmp_path))):
        status = get_node(client, "reg-disk-set")["status"]
    assert status["capacity"]["ephemeral-storage"] == status["allocatable"]["ephemeral-storage"] == "100Gi"


def test_lease_is_renewed(client):
    with Running(client, config("lease-a")):
        first = get_lease(client, "lease-a")
        assert first["spec"]["holderIdentity"] == "lease-a"
        assert first["spec"]["leaseDurationSeconds"] == 40
        renewed = wait_for(lambda: (lambda l: l if l["spec"]["renewTime"] != first["spec"]["renewTime"] else None)(
            get_lease(client, "lease-a")), what="lease renewal")
    assert parse_time(renewed["spec"]["renewTime"]) >= parse_time(first["spec"]["renewTime"])


def test_alivetime_counts_down_to_zero_and_walltime_asks_for_drain(client):
    with Running(client, config("wall-a", walltime=3, drain_margin=1.0)) as running:
        labels = get_node(client, "wall-a")["metadata"]["labels"]
        assert labels["jiriaf.walltime"] == "3"
        start = int(labels["jiriaf.alivetime"])
        assert 2 <= start <= 3
        wait_for(lambda: running.drain_requests, timeout=6, what="drain request")
        reason, message = running.drain_requests[0]
        assert reason == "WalltimeExpired"
        wait_for(lambda: get_node(client, "wall-a")["metadata"]["labels"]["jiriaf.alivetime"] == "0", timeout=6,
                 what="alivetime 0")
        assert len(running.drain_requests) == 1


def test_walltime_drain_runs_the_machine_to_expired(client):
    with Running(client, config("wall-b", walltime=2, drain_margin=1.0)) as running:
        wait_for(lambda: running.drain_requests, timeout=5, what="drain request")
        reason, message = running.drain_requests[0]
        running.node.drain(reason, message)
        assert running.node.machine.state is NodeState.EXPIRED
        assert running.pods.drained == [("WalltimeExpired", False)]
        node = get_node(client, "wall-b")
    assert node["spec"]["unschedulable"] is True
    assert {"key": DRAIN_TAINT, "value": "WalltimeExpired", "effect": "NoSchedule"} in node["spec"]["taints"]
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "WalltimeExpired")


def test_deleted_node_is_recreated(client):
    with Running(client, config("gone-a")):
        uid = get_node(client, "gone-a")["metadata"]["uid"]
        client.delete(path(resource="nodes", name="gone-a"))
        recreated = wait_for(lambda: _node_if_new(client, "gone-a", uid), timeout=5, what="re-created node")
    assert recreated["metadata"]["labels"]["type"] == "virtual-kubelet"


def _node_if_new(client, name, old_uid):
    try:
        node = get_node(client, name)
    except Exception:
        return None
    if node["metadata"]["uid"] != old_uid and node.get("status", {}).get("conditions"):
        return node
    return None


def test_restart_adopts_the_node_and_keeps_operator_labels(client):
    with Running(client, config("adopt-a")):
        uid = get_node(client, "adopt-a")["metadata"]["uid"]
    client.patch(path(resource="nodes", name="adopt-a"),
                 {"metadata": {"labels": {"team": "physics"}}, "spec": {"unschedulable": True}},
                 "application/merge-patch+json")
    with Running(client, config("adopt-a", site="Elsewhere")) as running:
        assert running.node.machine.state is NodeState.READY
        node = get_node(client, "adopt-a")
    assert node["metadata"]["uid"] == uid
    assert node["metadata"]["labels"]["team"] == "physics"
    assert node["metadata"]["labels"]["jiriaf.site"] == "Elsewhere"
    assert not node["spec"].get("unschedulable")


def test_operator_annotation_requests_a_drain(client):
    with Running(client, config("op-a")) as running:
        client.patch(path(resource="nodes", name="op-a"),
                     {"metadata": {"annotations": {DRAIN_ANNOTATION: "maintenance"}}},
                     "application/merge-patch+json")
        wait_for(lambda: running.drain_requests, timeout=5, what="drain request")
    assert running.drain_requests[0][0] == "OperatorRequest"


def _bound_pod(client, name, node):
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "none", "command": ["sleep", "5"]}]}}
    return client.create(path(resource="pods", namespace="default"), body)


def test_sigterm_drains_and_exits_zero(control_plane, client, tmp_path):
    env = {**os.environ, "KUBECONFIG": control_plane.kubeconfig, "NODENAME": "sig-a", "HOME": str(tmp_path),
           "VKUBELET_POD_IP": "127.0.0.1", "JIRIAF_NODETYPE": "cpu", "JIRIAF_SITE": "Local",
           "VK_LEASE_RENEW_INTERVAL": "0.5"}
    log_path = tmp_path / "sig-a.log"  # a file, not a pipe: a log larger than the pipe's buffer must not block vkcmd
    with open(log_path, "w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "vkcmd", "--nodename", "sig-a", "--provider", "mock",
                                    "--klog.v", "3"], cwd=REPO, env=env, stderr=log_file, text=True)
    try:
        wait_for(lambda: _ready(client, "sig-a"), timeout=15, what="node ready")
        _bound_pod(client, "on-sig-a", "sig-a")
        time.sleep(0.5)  # let the pod informer see it
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        log = log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0, log
    for part in ("from=Registering to=Ready", "from=Ready to=Draining", "from=Draining to=Expired"):
        assert part in log, log
    node = get_node(client, "sig-a")
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Shutdown")
    assert node["spec"]["unschedulable"] is True
    pod = client.get(path(resource="pods", namespace="default", name="on-sig-a"))
    assert pod["status"]["phase"] == "Failed" and pod["status"]["reason"] == "Shutdown"


def _ready(client, name):
    try:
        node = get_node(client, name)
    except Exception:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))


def test_scheduler_places_the_affinity_example_by_jiriaf_labels(client):
    import yaml

    example = yaml.safe_load((REPO / "examples" / "affinity-pod.yaml").read_text()
                             if (REPO / "examples" / "affinity-pod.yaml").exists()
                             else Path("/work/shared/examples/affinity-pod.yaml").read_text())
    example["metadata"]["name"] = "placed-by-labels"
    matching = config("aff-cpu", walltime=600, node_type="cpu", site="Local")
    other = config("aff-gpu", walltime=600, node_type="gpu", site="Local")
    with Running(client, matching), Running(client, other):
        client.create(path(resource="pods", namespace="default"), example)
        pod = wait_for(lambda: (lambda p: p if p["spec"].get("nodeName") else None)(
            client.get(path(resource="pods", namespace="default", name="placed-by-labels"))),
            timeout=10, what="binding")
        assert pod["spec"]["nodeName"] == "aff-cpu"
        # no node matches a site nobody has: the pod stays unscheduled with the scheduler's reason
        example["metadata"]["name"] = "placed-nowhere"
        example["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"][0]["matchExpressions"][1]["values"] = ["Mars"]
        client.create(path(resource="pods", namespace="default"), example)
        unscheduled = wait_for(lambda: (lambda p: p if any(
            c["type"] == "PodScheduled" and c["status"] == "False" for c in p.get("status", {}).get("conditions", []))
            else None)(client.get(path(resource="pods", namespace="default", name="placed-nowhere"))),
            timeout=10, what="unschedulable condition")
    assert not unscheduled["spec"].get("nodeName")
    condition = next(c for c in unscheduled["status"]["conditions"] if c["type"] == "PodScheduled")
    assert condition["reason"] == "Unschedulable" and "affinity" in condition["message"]


def test_delete_node_on_exit(client):
    from vkcmd.kube.client import ApiError

    with Running(client, config("bye-a", delete_on_exit=True)):
        assert get_node(client, "bye-a")
    with pytest.raises(ApiError) as caught:
        get_node(client, "bye-a")
    assert caught.value.not_found
    with Running(client, config("stay-a")):
        pass
    assert get_node(client, "stay-a")["metadata"]["name"] == "stay-a"


def _ready_condition(client, name):
    return next((c for c in get_node(client, name).get("status", {}).get("conditions", []) if c["type"] == "Ready"),
                {})


def test_ready_unknown_written_by_another_is_corrected_at_once(client):
    """The node lifecycle controller (here: the admin) sets Ready=Unknown: vkcmd compares with the API's
    view, not with what it last wrote, and does not wait for the (here 300 s) status interval."""
    with Running(client, config("unk-a", status_interval=300.0, lease_renew_interval=5.0)):
        wait_for(lambda: _ready_condition(client, "unk-a").get("status") == "True", what="Ready")
        time.sleep(0.5)  # the first writes are in the node informer's view
        client.patch(path(resource="nodes", name="unk-a", subresource="status"),
                     {"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                                                 "message": "Kubelet stopped posting node status."}]}})
        assert _ready_condition(client, "unk-a")["status"] == "Unknown"
        wait_for(lambda: _ready_condition(client, "unk-a").get("status") == "True", timeout=10, what="Ready again")
        ready = _ready_condition(client, "unk-a")
    assert ready["reason"] == "KubeletReady"


class StuckPods(NoPods):
    """Pods whose processes never go away (a process in D state, a bug): the drain must not wait for ever."""

    def __init__(self):
        super().__init__()
        self.hurried = 0

    def hurry(self):
        self.hurried += 1

    def wait_drained(self, timeout):
        time.sleep(timeout)
        return False

    def max_grace_period(self):
        return 1.0


def test_a_drain_that_never_ends_is_forced_then_given_up_with_a_log_line(client, caplog):
    running = Running(client, config("stuck-a", drain_patience=0.5))
    running.pods = running.node._pods = StuckPods()
    with running, caplog.at_level("WARNING", logger="vkcmd.kube.node"):
        started = time.monotonic()
        running.node.drain("Shutdown", "test")
        elapsed = time.monotonic() - started
        assert running.node.machine.state is NodeState.EXPIRED
    assert elapsed < 15, elapsed  # 1 s grace + 0.5 s, then 0.5 s after forcing, on a loaded machine
    assert running.pods.hurried == 1
    text = caplog.text
    assert "drain of node stuck-a not done after 2s" in text and "forcing the rest" in text
    assert "still not done" in text and "expiring anyway" in text


def test_cordon_keeps_the_taints_others_added(client):
    with Running(client, config("cordon-a")) as running:
        node = get_node(client, "cordon-a")
        taints = node["spec"]["taints"] + [{"key": "example.com/gpu", "value": "no", "effect": "NoSchedule"}]
        client.patch(path(resource="nodes", name="cordon-a"), {"spec": {"taints": taints}},
                     "application/merge-patch+json")
        running.node.drain("Shutdown", "test")
        node = get_node(client, "cordon-a")
    keys = [t["key"] for t in node["spec"]["taints"]]
    assert {"virtual-kubelet.io/provider", "example.com/gpu", DRAIN_TAINT} <= set(keys), keys
    assert keys.count(DRAIN_TAINT) == 1
    assert node["spec"]["unschedulable"] is True


def test_renewal_reads_the_lease_again_when_someone_else_wrote_it(client):
    with Running(client, config("lease-b", lease_renew_interval=60.0)) as running:
        lease = get_lease(client, "lease-b")
        lease["spec"]["holderIdentity"] = "someone-else"
        client.replace(path(group="coordination.k8s.io", resource="leases", namespace="kube-node-lease",
                            name="lease-b"), lease)  # our cached copy is now stale: a conflict
        running.node.lease.renew()
        renewed = get_lease(client, "lease-b")
    assert renewed["spec"]["holderIdentity"] == "lease-b"


def test_a_node_identity_cordons_without_touching_its_taints(control_plane, tmp_path):
    """NodeRestriction lets a node set taints when it registers, never change them: the drain is
    spec.unschedulable alone (the scheduler's node.kubernetes.io/unschedulable taint follows from it)."""
    kubeconfig = control_plane.write_kubeconfig(str(tmp_path / "n.kubeconfig"), "system:node:ident-a",
                                                ["system:nodes"])
    node_client = KubeClient.from_kubeconfig(kubeconfig)
    admin = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    try:
        with Running(node_client, config("ident-a", node_identity=True)) as running:
            before = get_node(admin, "ident-a")["spec"]["taints"]
            running.node.drain("Shutdown", "test")
            node = get_node(admin, "ident-a")
        assert node["spec"]["unschedulable"] is True
        assert DRAIN_TAINT not in [t["key"] for t in node["spec"].get("taints") or []]
        assert {"key": "virtual-kubelet.io/provider", "value": "mock", "effect": "NoSchedule"} in before
        assert "kubernetes.io/role" not in node["metadata"]["labels"]
        with Running(node_client, config("ident-a", node_identity=True)) as running:  # adoption
            assert running.node.machine.state is NodeState.READY
            adopted = get_node(admin, "ident-a")
        assert not adopted["spec"].get("unschedulable")
    finally:
        node_client.close()
        admin.close()
