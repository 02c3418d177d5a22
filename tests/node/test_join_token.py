"""The operator's side of a join: ``python -m tools.kubelite token create`` (as ``kubeadm token create``), and
the TokenRequest floor kubelite keeps by default (600 s, as kube-apiserver) unless its test knob lowers it."""

from __future__ import annotations

import base64
import datetime
import os
import re
import stat
import subprocess
import sys

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.node import REPO


def token_create(control_plane, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.kubelite", "token", "create", "--kubeconfig",
                           control_plane.kubeconfig, *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_token_create_prints_a_bootstrap_kubeconfig_that_authenticates(control_plane, kube_client, kubectl,
                                                                       tmp_path):
    proc = token_create(control_plane, "--ttl", "2h")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    config = yaml.safe_load(proc.stdout)
    assert config["clusters"][0]["cluster"]["server"] == control_plane.url
    token = config["users"][0]["user"]["token"]
    token_id, secret = re.fullmatch(r"([a-z0-9]{6})\.([a-z0-9]{16})", token).groups()
    stored = client.CoreV1Api(kube_client).read_namespaced_secret(f"bootstrap-token-{token_id}", "kube-system")
    data = {k: base64.b64decode(v).decode() for k, v in stored.data.items()}
    assert stored.type == "bootstrap.kubernetes.io/token" and data["token-secret"] == secret
    expires = datetime.datetime.fromisoformat(data["expiration"].replace("Z", "+00:00"))
    left = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 2 * 3600 - 120 < left <= 2 * 3600
    path = tmp_path / "printed.kubeconfig"
    path.write_text(proc.stdout)
    whoami = yaml.safe_load(kubectl.with_kubeconfig(str(path))("auth", "whoami", "-o", "yaml", check=True).stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:bootstrap:{token_id}"
    assert "system:bootstrappers:kubeadm:default-node-token" in whoami["status"]["userInfo"]["groups"]
    # what the token may do: post CSRs, nothing else
    assert kubectl.with_kubeconfig(str(path))("get", "secrets", "-n", "kube-system").returncode != 0


def test_token_create_writes_the_kubeconfig_0600_and_prints_no_secret(control_plane, tmp_path):
    out = tmp_path / "boot.kubeconfig"
    proc = token_create(control_plane, "--ttl", "30m", "--kubeconfig-out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    token = yaml.safe_load(out.read_text())["users"][0]["user"]["token"]
    assert token.split(".")[1] not in proc.stdout + proc.stderr
    assert re.fullmatch(rf"bootstrap token {token.split('.')[0]} \(groups system:bootstrappers:kubeadm:"
                        rf"default-node-token, expires \S+\): kubeconfig written to {out} \(0600\)\n", proc.stdout)
    assert [p.name for p in tmp_path.iterdir()] == ["boot.kubeconfig"]  # no temporary left


def test_an_unwritable_kubeconfig_out_makes_no_token(control_plane, kube_client, tmp_path):
    before = client.CoreV1Api(kube_client).list_namespaced_secret("kube-system").items
    proc = token_create(control_plane, "--kubeconfig-out", str(tmp_path / "missing" / "boot.kubeconfig"))
    assert proc.returncode == 1 and "no directory" in proc.stderr, proc.stderr
    assert len(client.CoreV1Api(kube_client).list_namespaced_secret("kube-system").items) == len(before)


def test_token_create_warns_when_the_group_may_not_join(control_plane):
    proc = token_create(control_plane, "--groups", "system:bootstrappers:nobody")
    assert proc.returncode == 0
    assert "no ClusterRoleBinding grants system:node-bootstrapper" in proc.stderr, proc.stderr


@pytest.mark.parametrize("ttl", ["5x", "", "h2"])
def test_a_bad_ttl_is_refused_with_a_reason(control_plane, ttl):
    proc = token_create(control_plane, "--ttl", ttl)
    assert proc.returncode == 2 and "invalid duration" in proc.stderr, proc.stderr


def test_token_requests_under_ten_minutes_are_refused_by_default(kube_client, namespace):
    core = client.CoreV1Api(kube_client)

    def request(seconds):
        return core.create_namespaced_service_account_token(
            "default", namespace, {"spec": {"audiences": ["x"], "expirationSeconds": seconds}})

    with pytest.raises(ApiException) as refused:
        request(599)
    assert refused.value.status == 422 and "less than 10 minutes" in refused.value.body
    assert request(600).status.token
