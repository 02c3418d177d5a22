"""The client's credentials against the local control plane: exec plugins (token and certificate), a
token the server refuses (401: the plugin runs again), a token file replaced in place, an in-memory CA
and client pair, and a kubeconfig start-up refuses in one line."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vkcmd.kube.client import ApiError, KubeClient, path

REPO = Path(__file__).resolve().parents[2]
CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"

PLUGIN = f"""#!{sys.executable}
import datetime, json, os
count = os.environ["COUNT_FILE"]
n = int(open(count).read()) + 1 if os.path.exists(count) else 1
open(count, "w").write(str(n))
answers = open(os.environ["ANSWERS"]).read().split()
answer = answers[min(n, len(answers)) - 1]
status = {{}}
if answer.startswith("cert:"):
    directory = answer[5:]
    status["clientCertificateData"] = open(directory + "/tls.crt").read()
    status["clientKeyData"] = open(directory + "/tls.key").read()
else:
    status["token"] = answer
if os.environ.get("EXPIRES_IN"):
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=float(os.environ["EXPIRES_IN"]))
    status["expirationTimestamp"] = expiry.isoformat()
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status}}))
"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _kubeconfig(control_plane, directory: Path, user: dict) -> str:
    admin = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    document = {"apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": admin["clusters"][0]["name"], "user": "u"}}],
                "current-context": "x"}
    file = directory / "kubeconfig"
    file.write_text(yaml.safe_dump(document))
    return str(file)


def _exec_user(directory: Path, answers: list[str], expires_in: float | None = None) -> dict:
    script = directory / "plugin"
    script.write_text(PLUGIN)
    script.chmod(0o700)
    (directory / "answers").write_text("\n".join(answers))
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script),
                     "interactiveMode": "Never",
                     "env": [{"name": "COUNT_FILE", "value": str(directory / "runs")},
                             {"name": "ANSWERS", "value": str(directory / "answers")},
                             {"name": "EXPIRES_IN", "value": "" if expires_in is None else str(expires_in)}]}}


def _runs(directory: Path) -> int:
    return int((directory / "runs").read_text())


def test_exec_plugin_token_and_a_refused_token_runs_the_plugin_again(control_plane, tmp_path):
    good = control_plane.create_bootstrap_token()  # system:bootstrappers may list CSRs
    kubeconfig = _kubeconfig(control_plane, tmp_path, _exec_user(tmp_path, ["abcdef.0123456789abcdef", good]))
    client = KubeClient.from_kubeconfig(kubeconfig)
    try:
        assert _runs(tmp_path) == 1
        with pytest.raises(ApiError) as refused:
            client.get(CSRS)
        assert refused.value.status == 401 and "0123456789abcdef" not in str(refused.value)
        assert client.get(CSRS)["kind"] == "CertificateSigningRequestList"
        assert _runs(tmp_path) == 2
        client.get(CSRS)
        assert _runs(tmp_path) == 2, "a token the server takes is kept"
    finally:
        client.close()


def test_exec_plugin_client_certificate(control_plane, tmp_path):
    pair = control_plane.issue_client_cert("exec-admin", ("system:masters",))
    (tmp_path / "tls.crt").write_bytes(pair.cert_pem)
    (tmp_path / "tls.key").write_bytes(pair.key_pem)
    kubeconfig = _kubeconfig(control_plane, tmp_path, _exec_user(tmp_path, [f"cert:{tmp_path}"]))
    client = KubeClient.from_kubeconfig(kubeconfig)
    try:
        assert client.certificate_identity() == ("exec-admin", ["system:masters"])
        assert client.get(path(resource="nodes"))["kind"] == "NodeList"
    finally:
        client.close()


def _whoami(client: KubeClient) -> str:
    review = client.create("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    return review["status"]["userInfo"]["username"]


def test_exec_plugin_renews_its_client_certificate_before_expiry(control_plane, tmp_path):
    for name in ("first", "second"):
        pair = control_plane.issue_client_cert(f"exec-{name}", ("system:masters",))
        (tmp_path / name).mkdir()
        (tmp_path / name / "tls.crt").write_bytes(pair.cert_pem)
        (tmp_path / name / "tls.key").write_bytes(pair.key_pem)
    user = _exec_user(tmp_path, [f"cert:{tmp_path / 'first'}", f"cert:{tmp_path / 'second'}"], expires_in=6.0)
    client = KubeClient.from_kubeconfig(_kubeconfig(control_plane, tmp_path, user))
    try:
        assert _whoami(client) == "exec-first"
        time.sleep(6.5)
        assert _whoami(client) == "exec-second"  # new connections present the plugin's new certificate
        assert client.certificate_identity() == ("exec-second", ["system:masters"])
        assert _runs(tmp_path) >= 2
    finally:
        client.close()


def test_token_file_replaced_while_running(control_plane, tmp_path):
    token = tmp_path / "token"
    token.write_text("abcdef.0123456789abcdef\n")  # not a token the server knows
    client = KubeClient.from_kubeconfig(_kubeconfig(control_plane, tmp_path, {"tokenFile": str(token)}))
    try:
        with pytest.raises(ApiError) as refused:
            client.get(CSRS)
        assert refused.value.status == 401
        fresh = tmp_path / "token.new"
        fresh.write_text(control_plane.create_bootstrap_token() + "\n")
        os.replace(fresh, token)
        assert client.get(CSRS)["kind"] == "CertificateSigningRequestList"
    finally:
        client.close()


def test_ca_and_pair_from_data_and_the_ca_as_a_file_for_the_kubelet_api(control_plane, tmp_path):
    admin = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    ca = base64.b64decode(admin["clusters"][0]["cluster"]["certificate-authority-data"])
    client = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    try:
        assert client.get(path(resource="namespaces"))["kind"] == "NamespaceList"
        assert Path(client.ca_file).read_bytes() == ca
    finally:
        client.close()


def test_a_kubeconfig_with_a_wrong_ca_fails_requests_not_silently(control_plane, tmp_path):
    other = control_plane.issue_serving_cert()  # a certificate, but not the cluster's CA
    admin = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    admin["clusters"][0]["cluster"]["certificate-authority-data"] = _b64(other.cert_pem)
    file = tmp_path / "kubeconfig"
    file.write_text(yaml.safe_dump(admin))
    client = KubeClient.from_kubeconfig(str(file))
    try:
        with pytest.raises(ApiError) as unreachable:
            client.get(path(resource="namespaces"))
        assert unreachable.value.status == 0 and "CERTIFICATE_VERIFY_FAILED" in unreachable.value.message
    finally:
        client.close()


def test_start_up_with_a_failing_exec_plugin_is_one_line(control_plane, tmp_path):
    user = _exec_user(tmp_path, ["unused"])
    user["exec"]["command"] = str(tmp_path / "missing-plugin")
    kubeconfig = _kubeconfig(control_plane, tmp_path, user)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": kubeconfig, "NODENAME": "vk-bad",
           "VK_STATE_DIR": str(tmp_path / "state"), "VK_WORKSPACE": str(tmp_path / "work")}
    result = subprocess.run([sys.executable, "-m", "vkcmd"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("vkcmd:")]
    assert lines == [f"vkcmd: kubeconfig {kubeconfig}: user 'u': exec plugin missing-plugin: cannot run "
                     f"{tmp_path / 'missing-plugin'} (No such file or directory)"], result.stderr
