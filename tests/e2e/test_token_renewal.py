"""A running pod's projected service-account token is renewed in place: new content, no restart, no link followed.

The control plane here lets TokenRequest ask for 10-second tokens (kubelite's explicit test knob; the real
API server's floor, 600 s, stays kubelite's default), so the node's renewal at 80 % of a token's life comes
within seconds.
"""

from __future__ import annotations

import os
import stat

import pytest
from kubernetes import client

from tests.e2e.node import Node, container_state, pod_manifest, wait_for

LIFETIME = 10
AUDIENCE = "vk-renewal"


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    from tools.kubelite import ControlPlane
    from tools.kubelite.tokens import MIN_EXPIRATION_ENV

    patch = pytest.MonkeyPatch()
    patch.setenv(MIN_EXPIRATION_ENV, str(LIFETIME))  # read once, when the control plane starts
    try:
        cp = ControlPlane(str(tmp_path_factory.mktemp("kubelite-short-tokens"))).start()
    finally:
        patch.undo()
    yield cp
    cp.stop()


@pytest.fixture(scope="module")
def node(control_plane, tmp_path_factory):
    running = Node(control_plane, tmp_path_factory.mktemp("vk"), name="vk-renewal").start()
    yield running
    assert running.stop() == 0, running.log()


def token_volume(name: str) -> dict:
    return {"name": name, "projected": {"sources": [{"serviceAccountToken": {
        "path": "token", "audience": AUDIENCE, "expirationSeconds": LIFETIME}}]}}


def review(kube_client, token: str) -> dict:
    answer = client.AuthenticationV1Api(kube_client).create_token_review(
        {"spec": {"token": token, "audiences": [AUDIENCE]}})
    return answer.status.to_dict()


def test_a_running_pods_token_file_is_renewed_without_a_restart(node, kube_client, namespace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "planted").write_text("not a token\n")
    # the container plants a link at one token file and replaces another mount by a link out of the pod;
    # then it prints the checksum of the token it reads, every half second
    script = (f"rm -f planted/token && ln -s {outside}/planted planted/token && "
              f"mv away away.old && ln -s {outside} away && "
              "while true; do cksum < rw/token; sleep 0.5; done")
    manifest = pod_manifest("renewal", ["sh", "-c", script], volumes=[
        token_volume(v) for v in ("rw", "ro", "planted", "away")])
    manifest["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "rw", "mountPath": "rw"}, {"name": "ro", "mountPath": "ro", "readOnly": True},
        {"name": "planted", "mountPath": "planted"}, {"name": "away", "mountPath": "away"}]
    node.create(manifest, namespace)
    running = node.wait_phase("renewal", phases=("Running",), namespace=namespace, timeout=30)
    started = container_state(running)["state"]["running"]["startedAt"]
    directory = node.container_dir("renewal", "c", namespace)
    first = (directory / "rw" / "token").read_text()
    assert review(kube_client, first)["authenticated"] is True

    renewed = wait_for(lambda: (lambda t: t if t != first else None)((directory / "rw" / "token").read_text()),
                       timeout=LIFETIME * 3, interval=0.1, what="the token file rewritten with a renewed token")
    status = review(kube_client, renewed)
    assert status["authenticated"] is True, status
    assert status["user"]["username"] == f"system:serviceaccount:{namespace}:default"
    assert status["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["renewal"]

    # the read-only copy is renewed too and stays read-only
    wait_for(lambda: (directory / "ro" / "token").read_text() != first, timeout=LIFETIME, what="ro renewed")
    assert stat.S_IMODE((directory / "ro" / "token").stat().st_mode) == 0o400
    # the planted link is replaced, not written through; the mount turned into a link is left alone
    wait_for(lambda: (directory / "planted" / "token").is_file() and not (directory / "planted" / "token").is_symlink(),
             timeout=LIFETIME, what="the planted link replaced by the token file")
    assert (outside / "planted").read_text() == "not a token\n"
    assert sorted(os.listdir(outside)) == ["planted"]

    # the same process saw both tokens: no restart
    pod = node.pod("renewal", namespace)
    state = container_state(pod)
    assert state["restartCount"] == 0 and state["state"]["running"]["startedAt"] == started, state
    sums = set(wait_for(lambda: (lambda s: s if len(s) >= 2 else None)(
        set((directory / "stdout").read_text().split("\n")) - {""}), timeout=5, what="two checksums in stdout"))
    assert len(sums) >= 2
    assert renewed not in node.log() and first not in node.log()
