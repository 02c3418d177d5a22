"""Four vkcmd nodes on one host with one HOME, as JIRIAF's launcher runs one per Slurm task (issue 15).

Nothing they write may collide (state, certificates, workspaces, logs), each node's stats count only its
own pods, and the drain or the ``--delete-node-on-exit`` of one leaves the others and their pods alone.
"""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from tests.e2e.node import Node, kubelet_client_context, wait_for
from vkcmd.kube.client import ApiError, path

NODES = ("vk-multi-a", "vk-multi-b", "vk-multi-c", "vk-multi-d")
REPLICAS = 8


@pytest.fixture(scope="module")
def nodes(control_plane, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("multi")  # one HOME for all four
    started: list[Node] = []
    try:
        for index, name in enumerate(NODES):
            # deleting its own Node is beyond a node identity's rights (Node authorizer): that one runs as admin
            env = {"VK_DELETE_NODE_ON_EXIT": "true", "identity": "admin"} if index == 3 else {}
            started.append(Node(control_plane, workdir, name=name, **env).start())
        yield started
    finally:
        for node in started:
            node.stop()


@pytest.fixture(scope="module")
def stats_context(control_plane, tmp_path_factory):
    return kubelet_client_context(control_plane, tmp_path_factory.mktemp("cert"), "e2e-multi-reader")


def deployment(namespace: str) -> dict:
    labels = {"app": "spread"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "spread", "namespace": namespace},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "none",
                                                           "command": ["sleep", "1000"]}],
                                           "nodeSelector": {"type": "virtual-kubelet"},
                                           "tolerations": [{"key": "virtual-kubelet.io/provider",
                                                            "operator": "Exists", "effect": "NoSchedule"}],
                                           "terminationGracePeriodSeconds": 2}}}}


@pytest.fixture(scope="module")
def spread(nodes, kube_client):
    """The Deployment's namespace, once its replicas run; the namespace goes afterwards."""
    from kubernetes import client as k8s

    from tests.conftest import ensure_service_account

    core = k8s.CoreV1Api(kube_client)
    name = "multi-spread"
    core.create_namespace({"metadata": {"name": name}})
    ensure_service_account(core, name)
    nodes[0].client.create(path(group="apps", version="v1", resource="deployments", namespace=name),
                           deployment(name))
    wait_for(lambda: len(running_pods(nodes[0].client, name)) == REPLICAS, timeout=60, what="8 replicas Running")
    yield name
    core.delete_namespace(name)


def running_pods(client, namespace: str) -> list[dict]:
    pods = client.get(path(resource="pods", namespace=namespace))["items"]
    return [p for p in pods if p.get("status", {}).get("phase") == "Running" and not
            p["metadata"].get("deletionTimestamp")]


def by_node(pods: list[dict]) -> dict[str, set[str]]:
    placed: dict[str, set[str]] = {}
    for pod in pods:
        placed.setdefault(pod["spec"]["nodeName"], set()).add(pod["metadata"]["name"])
    return placed


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_four_nodes_share_a_home_without_collisions(nodes, stats_context, spread):
    client, namespace = nodes[0].client, spread
    placed = by_node(running_pods(client, namespace))
    assert set(placed) == set(NODES), placed                       # the scheduler spread them over all four
    assert max(map(len, placed.values())) - min(map(len, placed.values())) <= 1, placed

    home = nodes[0].home
    # one state dir, serving pair and log per node; every pod's workspace where its own node put it
    serving = {(home / ".vkcmd" / n / "kubelet-serving.crt").read_bytes() for n in NODES}
    assert len(serving) == len(NODES)
    assert all(node.log_path.exists() and node.name in node.log() for node in nodes)
    for node in nodes:
        for pod in placed[node.name]:
            assert (home / namespace / pod / "containers" / "c" / "pgid").exists()

    # each node's stats count its own pods only, and its own processes
    for node in nodes:
        url = f"https://127.0.0.1:{node.port}/stats/summary"
        with urllib.request.urlopen(url, context=stats_context, timeout=20) as answer:
            summary = json.load(answer)
        assert {p["podRef"]["name"] for p in summary["pods"]
                if p["podRef"]["namespace"] == namespace} == placed[node.name], node.name


def test_draining_one_node_leaves_the_others_alone(nodes, spread):
    client, namespace = nodes[0].client, spread
    before = by_node(running_pods(client, namespace))
    others = [n for n in nodes if n.name not in ("vk-multi-a", "vk-multi-d")]
    home = nodes[0].home  # the processes of all four carry the same HOME: follow each pod's group instead
    groups = {pod: int((home / namespace / pod / "containers" / "c" / "pgid").read_text())
              for pods in before.values() for pod in pods}

    # a plain drain (SIGTERM) of a, and the --delete-node-on-exit of d
    for leaving in (nodes[0], nodes[3]):
        assert leaving.stop() == 0, leaving.log()

    def node_object(name):
        try:
            return client.get(path(resource="nodes", name=name))
        except ApiError as error:
            if error.not_found:
                return None
            raise

    assert node_object("vk-multi-a")["spec"].get("unschedulable") is True
    assert node_object("vk-multi-d") is None
    assert not any(group_alive(groups[pod]) for pod in before["vk-multi-a"] | before["vk-multi-d"])
    for node in others:
        assert node.ready(), node.name                                       # still Ready, schedulable
        assert all(group_alive(groups[pod]) for pod in before[node.name]), node.name  # their pods live on
        alive = {p["metadata"]["name"] for p in running_pods(client, namespace) if p["spec"]["nodeName"] == node.name}
        assert before[node.name] <= alive, node.name
