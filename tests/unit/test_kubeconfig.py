"""vkcmd's kubeconfig / in-cluster loader against the oracle, the real ``kubernetes.config``.

Each kubeconfig of the matrix (data or files, token / tokenFile / exec plugin /
basic, TLS options, proxies) is resolved by ``vkcmd.kube.kubeconfig`` and by
``kubernetes.config`` into a Configuration, and compared field by field. Exec
plugins are real scripts that print an ExecCredential and count their runs.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.incluster_config import InClusterConfigLoader

from tools.kubelite.certs import ClusterPKI
from vkcmd.kube import kubeconfig
from vkcmd.kube.credentials import CredentialError, ExecPlugin
from vkcmd.kube.kubeconfig import KubeconfigError

PKI = ClusterPKI()
PAIR = PKI.issue_client_cert("system:node:vk", ("system:nodes",))
OTHER = PKI.issue_client_cert("other")
SECRET = "s3cr3t-t0ken-value"

PLUGIN = """#!{python}
import json, os, sys
count = os.environ["COUNT_FILE"]
n = int(open(count).read()) + 1 if os.path.exists(count) else 1
open(count, "w").write(str(n))
mode = open(os.environ["MODE_FILE"]).read().strip() if os.environ.get("MODE_FILE") else "token"
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
if os.environ.get("SEEN_FILE"):
    open(os.environ["SEEN_FILE"], "w").write(json.dumps({{"info": info, "argv": sys.argv[1:], "cwd": os.getcwd()}}))
if mode == "fail":
    print("the identity provider is down", file=sys.stderr)
    sys.exit(3)
status = {{}}
if mode == "token":
    status["token"] = os.environ.get("TOKEN") or f"tok-{{n}}"
elif mode == "cert":
    status["clientCertificateData"] = open(os.environ["CERT"]).read()
    status["clientKeyData"] = open(os.environ["KEY"]).read()
if os.environ.get("EXPIRY"):
    status["expirationTimestamp"] = os.environ["EXPIRY"]
version = os.environ.get("ANSWER_VERSION") or info["apiVersion"]
print(json.dumps({{"apiVersion": version, "kind": "ExecCredential", "status": status}}))
"""


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def write_config(directory: Path, cluster: dict, user: dict | None, *, name: str = "kubeconfig",
                 extra_contexts: list | None = None) -> str:
    context = {"cluster": "c"} if user is None else {"cluster": "c", "user": "u"}
    document = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "c", "cluster": cluster}],
                "users": [] if user is None else [{"name": "u", "user": user}],
                "contexts": [{"name": "ctx", "context": context}] + (extra_contexts or []),
                "current-context": "ctx"}
    path = directory / name
    path.write_text(yaml.safe_dump(document))
    return str(path)


def plugin(directory: Path, **env: str) -> dict:
    script = directory / "plugin.py"
    script.write_text(PLUGIN.format(python=sys.executable))
    script.chmod(0o700)
    env.setdefault("COUNT_FILE", str(directory / "runs"))
    return {"command": "./plugin.py", "args": ["--flag", "value"],
            "env": [{"name": k, "value": v} for k, v in env.items()]}


def runs(directory: Path) -> int:
    path = directory / "runs"
    return int(path.read_text()) if path.exists() else 0


def oracle(path: str, context: str | None = None) -> k8s_client.Configuration:
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=path, context=context, client_configuration=configuration,
                                persist_config=False)
    return configuration


def read(path: str | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


def normalise(authorization: str | None) -> str | None:
    """The header as the server reads it: scheme case-insensitive, surrounding whitespace dropped."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return f"{scheme.lower()} {value.strip()}"


def effective_proxy(configuration: k8s_client.Configuration) -> str | None:
    from kubernetes.client.rest import should_bypass_proxies

    proxy = configuration.proxy
    if proxy and should_bypass_proxies(configuration.host, configuration.no_proxy or ""):
        return None
    return proxy


def assert_same(access: kubeconfig.ClusterAccess, configuration: k8s_client.Configuration) -> None:
    assert access.server == configuration.host
    assert access.verify == configuration.verify_ssl
    assert access.tls_server_name == configuration.tls_server_name
    assert access.ca_pem == read(configuration.ssl_ca_cert)
    pair = access.client_pair()
    assert (pair[0] if pair else None) == read(configuration.cert_file)
    theirs_key = read(configuration.key_file)
    ours_key = pair[1] if pair else None
    assert (ours_key or (pair[0] if pair and configuration.key_file else None)) == theirs_key
    assert normalise(access.credentials.authorization()) == \
        normalise(configuration.get_api_key_with_prefix("BearerToken"))
    assert access.proxy == effective_proxy(configuration)


# --- the matrix ------------------------------------------------------------------------------

def _data_certs(d):  # kind, k3s, kubelite, kubeadm's admin.conf: everything inline
    return ({"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(PKI.ca_cert_pem)},
            {"client-certificate-data": b64(PAIR.cert_pem), "client-key-data": b64(PAIR.key_pem)})


def _file_certs(d):  # kubeadm's kubelet.conf: relative CA file, cert and key files
    (d / "pki").mkdir()
    (d / "pki" / "ca.crt").write_bytes(PKI.ca_cert_pem)
    (d / "pki" / "client.crt").write_bytes(PAIR.cert_pem)
    (d / "pki" / "client.key").write_bytes(PAIR.key_pem)
    return ({"server": "https://10.0.0.1:6443/", "certificate-authority": "pki/ca.crt"},
            {"client-certificate": "pki/client.crt", "client-key": str(d / "pki" / "client.key")})


def _one_pem(d):  # vkcmd's own bootstrap: one PEM named as both certificate and key
    (d / "node.pem").write_bytes(PAIR.key_pem + PAIR.cert_pem)
    return ({"server": "https://api.example:443", "certificate-authority-data": b64(PKI.ca_cert_pem)},
            {"client-certificate": str(d / "node.pem"), "client-key": str(d / "node.pem")})


def _token(d):  # a JIRIAF node launched by Slurm with a token
    return ({"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(PKI.ca_cert_pem)},
            {"token": SECRET})


def _token_file(d):
    (d / "token").write_text(SECRET + "\n")
    return ({"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(PKI.ca_cert_pem)},
            {"tokenFile": "token"})


def _token_beats_file(d):
    (d / "token").write_text("from-the-file")
    return ({"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True},
            {"token": SECRET, "tokenFile": "token"})


def _exec_v1(d):
    return ({"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(PKI.ca_cert_pem)},
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "interactiveMode": "Never",
                      **plugin(d, TOKEN=SECRET)}})


def _exec_v1beta1_expiring(d):
    expiry = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    return ({"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(PKI.ca_cert_pem)},
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", **plugin(d, TOKEN=SECRET, EXPIRY=expiry)}})


def _exec_cert(d):
    (d / "issued.crt").write_bytes(OTHER.cert_pem)
    (d / "issued.key").write_bytes(OTHER.key_pem)
    (d / "mode").write_text("cert")
    return ({"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(PKI.ca_cert_pem)},
            {"client-certificate-data": b64(PAIR.cert_pem), "client-key-data": b64(PAIR.key_pem),
             "exec": {"apiVersion": "client.authentication.k8s.io/v1", "interactiveMode": "IfAvailable",
                      **plugin(d, MODE_FILE=str(d / "mode"), CERT=str(d / "issued.crt"), KEY=str(d / "issued.key"))}})


def _insecure(d):
    return ({"server": "https://192.168.1.5:6443", "insecure-skip-tls-verify": True}, {"token": SECRET})


def _server_name(d):
    return ({"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(PKI.ca_cert_pem),
             "tls-server-name": "kubernetes.default.svc"}, {"token": SECRET})


def _plain_http(d):
    return ({"server": "http://127.0.0.1:8080"}, {"token": SECRET})


def _basic(d):
    return ({"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True},
            {"username": "admin", "password": "pa:ss"})


def _anonymous(d):
    return ({"server": "https://[fd00::1]:6443", "certificate-authority-data": b64(PKI.ca_cert_pem)}, None)


def _proxy_url(d):
    return ({"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(PKI.ca_cert_pem),
             "proxy-url": "http://proxy.site:3128"}, {"token": SECRET})


MATRIX = {f.__name__.strip("_"): f for f in (
    _data_certs, _file_certs, _one_pem, _token, _token_file, _token_beats_file, _exec_v1, _exec_v1beta1_expiring,
    _exec_cert, _insecure, _server_name, _plain_http, _basic, _anonymous, _proxy_url)}


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_resolves_as_the_kubernetes_client_does(case, tmp_path, monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                 "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    cluster, user = MATRIX[case](tmp_path)
    path = write_config(tmp_path, cluster, user)
    ours = kubeconfig.load(path)
    try:
        assert_same(ours, oracle(path))
    finally:
        ours.close()


@pytest.mark.parametrize("server, no_proxy, bypassed", [
    ("https://10.1.2.3:6443", "", False), ("https://10.1.2.3:6443", "10.0.0.0/8", True),
    ("https://10.1.2.3:6443", "192.168.0.0/16", False), ("https://api.example.org:6443", ".example.org", True),
    ("https://api.example.org:6443", "other.org,api.example.org:6443", True),
    ("https://api.example.org:6443", "*", True), ("https://api.example.org:6443", "example.com", False)])
def test_environment_proxy_and_no_proxy(server, no_proxy, bypassed, tmp_path, monkeypatch):
    for name in ("https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.site:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    path = write_config(tmp_path, {"server": server, "insecure-skip-tls-verify": True}, {"token": SECRET})
    ours = kubeconfig.load(path)
    assert_same(ours, oracle(path))
    assert (ours.proxy is None) == bypassed


def test_a_named_context_rather_than_the_current_one(tmp_path):
    path = write_config(tmp_path, {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True},
                        {"token": SECRET})
    document = yaml.safe_load(Path(path).read_text())
    document["clusters"].append({"name": "c2", "cluster": {"server": "https://10.9.9.9:443",
                                                            "certificate-authority-data": b64(PKI.ca_cert_pem)}})
    document["contexts"].append({"name": "second", "context": {"cluster": "c2", "user": "u"}})
    Path(path).write_text(yaml.safe_dump(document))
    ours = kubeconfig.load(path, context="second")
    assert ours.server == "https://10.9.9.9:443"
    assert_same(ours, oracle(path, context="second"))


def test_of_two_entries_with_one_name_the_first_wins(tmp_path):
    path = write_config(tmp_path, {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True},
                        {"token": SECRET})
    document = yaml.safe_load(Path(path).read_text())
    document["users"].append({"name": "u", "user": {"token": "second"}})
    document["clusters"].append({"name": "c", "cluster": {"server": "https://10.0.0.2:1"}})
    Path(path).write_text(yaml.safe_dump(document))
    ours = kubeconfig.load(path)
    assert ours.credentials.authorization() == f"Bearer {SECRET}"
    assert_same(ours, oracle(path))


def test_exec_plugin_gets_its_env_args_and_exec_info(tmp_path):
    spec = plugin(tmp_path, TOKEN=SECRET, SEEN_FILE=str(tmp_path / "seen"))
    path = write_config(tmp_path, {"server": "https://127.0.0.1:6443",
                                   "certificate-authority-data": b64(PKI.ca_cert_pem)},
                        {"exec": {"apiVersion": "client.authentication.k8s.io/v1", **spec,
                                  "provideClusterInfo": True}})
    ours = kubeconfig.load(path)
    assert ours.credentials.authorization() == f"Bearer {SECRET}"
    seen = json.loads((tmp_path / "seen").read_text())
    assert seen["argv"] == ["--flag", "value"]
    assert seen["cwd"] == str(tmp_path)
    assert seen["info"]["kind"] == "ExecCredential" and seen["info"]["spec"]["interactive"] is False
    assert seen["info"]["spec"]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert runs(tmp_path) == 1
    for _ in range(5):
        ours.credentials.authorization()
    assert runs(tmp_path) == 1, "a credential without expiry is not fetched again"


def test_exec_plugin_runs_again_before_expiry_and_keeps_a_valid_token_while_it_fails(tmp_path):
    now = [time.time()]
    expiry = datetime.datetime.fromtimestamp(now[0] + 3600, datetime.timezone.utc).isoformat()
    (tmp_path / "mode").write_text("token")
    spec = {"apiVersion": "client.authentication.k8s.io/v1",
            **plugin(tmp_path, EXPIRY=expiry, MODE_FILE=str(tmp_path / "mode"))}
    credential = ExecPlugin(spec, base_dir=str(tmp_path), clock=lambda: now[0])
    assert credential.authorization() == "Bearer tok-1" and runs(tmp_path) == 1
    now[0] += 3600 - 301  # more than 5 minutes left: the token is used as it is
    assert credential.authorization() == "Bearer tok-1" and runs(tmp_path) == 1
    now[0] += 2  # within 5 minutes of the expiry: the plugin runs again
    assert credential.authorization() == "Bearer tok-2" and runs(tmp_path) == 2
    assert credential.authorization() == "Bearer tok-2" and runs(tmp_path) == 2
    # the plugin now fails: the current token (not expired yet) is kept, the plugin retried 10 s later, not per call
    # (the same expiry again, 299 s away: due again when a fifth of that is left, 59.8 s before it)
    (tmp_path / "mode").write_text("fail")
    now[0] += 240
    assert credential.authorization() == "Bearer tok-2" and runs(tmp_path) == 3
    assert credential.authorization() == "Bearer tok-2" and runs(tmp_path) == 3
    now[0] += 10
    assert credential.authorization() == "Bearer tok-2" and runs(tmp_path) == 4
    now[0] += 300  # expired, still failing: no credential, a clear error without the token
    with pytest.raises(CredentialError, match="exited with status 3: the identity provider is down") as raised:
        credential.authorization()
    assert "tok-" not in str(raised.value)


def test_exec_plugin_expiry_with_the_real_clock(tmp_path):
    expiry = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)).isoformat()
    path = write_config(tmp_path, {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True},
                        {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                  **plugin(tmp_path, EXPIRY=expiry)}})
    ours = kubeconfig.load(path)
    assert ours.credentials.authorization() == "Bearer tok-1"
    time.sleep(2.5)
    assert ours.credentials.authorization() == "Bearer tok-2"
    assert runs(tmp_path) == 2


def test_exec_plugin_with_a_new_certificate_gives_a_new_pair(tmp_path):
    now = [time.time()]
    (tmp_path / "issued.crt").write_bytes(OTHER.cert_pem)
    (tmp_path / "issued.key").write_bytes(OTHER.key_pem)
    (tmp_path / "mode").write_text("cert")
    expiry = datetime.datetime.fromtimestamp(now[0] + 600, datetime.timezone.utc).isoformat()
    spec = {"apiVersion": "client.authentication.k8s.io/v1",
            **plugin(tmp_path, EXPIRY=expiry, MODE_FILE=str(tmp_path / "mode"), CERT=str(tmp_path / "issued.crt"),
                     KEY=str(tmp_path / "issued.key"))}
    credential = ExecPlugin(spec, base_dir=str(tmp_path), clock=lambda: now[0])
    first = credential.client_pair()
    assert first == (OTHER.cert_pem, OTHER.key_pem) and credential.authorization() is None
    assert credential.client_pair() is first, "the same pair object while it does not change"
    (tmp_path / "issued.crt").write_bytes(PAIR.cert_pem)
    (tmp_path / "issued.key").write_bytes(PAIR.key_pem)
    now[0] += 600
    assert credential.client_pair() == (PAIR.cert_pem, PAIR.key_pem) and runs(tmp_path) == 2


@pytest.mark.parametrize("answer, message", [
    ({"ANSWER_VERSION": "client.authentication.k8s.io/v1beta1"}, "expected an ExecCredential"),
    ({"TOKEN": ""}, None),
])
def test_exec_plugin_bad_answers_are_clear_errors(answer, message, tmp_path):
    (tmp_path / "mode").write_text("token" if message else "nothing")
    spec = {"apiVersion": "client.authentication.k8s.io/v1", **plugin(tmp_path, MODE_FILE=str(tmp_path / "mode"),
                                                                      **answer)}
    path = write_config(tmp_path, {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True},
                        {"exec": spec})
    with pytest.raises(KubeconfigError, match=message or "expected status.token") as raised:
        kubeconfig.load(path)
    assert str(raised.value).startswith(f"kubeconfig {path}: user 'u': exec plugin plugin.py")


def test_a_failing_exec_plugin_is_one_clear_error(tmp_path):
    (tmp_path / "mode").write_text("fail")
    spec = {"apiVersion": "client.authentication.k8s.io/v1", **plugin(tmp_path, MODE_FILE=str(tmp_path / "mode"))}
    path = write_config(tmp_path, {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True},
                        {"exec": spec})
    with pytest.raises(KubeconfigError) as raised:
        kubeconfig.load(path)
    assert str(raised.value) == (f"kubeconfig {path}: user 'u': exec plugin plugin.py exited with status 3: "
                                 "the identity provider is down")
    assert "\n" not in str(raised.value)
    # (the kubernetes client logs this and carries on without credentials: every request is then anonymous)


def test_token_file_is_read_again_when_it_changes(tmp_path):
    token = tmp_path / "token"
    token.write_text("first\n")
    path = write_config(tmp_path, {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True},
                        {"tokenFile": str(token)})
    ours = kubeconfig.load(path)
    assert ours.credentials.authorization() == "Bearer first"
    token.write_text("second-longer\n")  # rewritten in place
    assert ours.credentials.authorization() == "Bearer second-longer"
    fresh = tmp_path / "token.new"
    fresh.write_text("third\n")
    os.replace(fresh, token)  # replaced, as the kubelet swaps a projected token
    assert ours.credentials.authorization() == "Bearer third"
    token.unlink()  # gone for a moment: the last token is kept
    assert ours.credentials.authorization() == "Bearer third"
    token.write_text("fourth\n")
    assert ours.credentials.authorization() == "Bearer fourth"


def _service_account(directory: Path) -> Path:
    sa = directory / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(SECRET)
    (sa / "ca.crt").write_bytes(PKI.ca_cert_pem)
    return sa


@pytest.mark.parametrize("host", ["10.96.0.1", "fd00:10:96::1"])
def test_in_cluster_as_the_kubernetes_client(host, tmp_path):
    sa = _service_account(tmp_path)
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": "443"}
    ours = kubeconfig.in_cluster(env, directory=str(sa))
    theirs = k8s_client.Configuration()
    InClusterConfigLoader(token_filename=str(sa / "token"), cert_filename=str(sa / "ca.crt"),
                          environ=env).load_and_set(theirs)
    assert ours.server == theirs.host
    assert ours.ca_pem == read(theirs.ssl_ca_cert) and ours.ca_file() == str(sa / "ca.crt")
    assert normalise(ours.credentials.authorization()) == normalise(theirs.get_api_key_with_prefix("BearerToken"))
    fresh = sa / "token.new"
    fresh.write_text("rotated")
    os.replace(fresh, sa / "token")
    assert ours.credentials.authorization() == "Bearer rotated"


@pytest.mark.parametrize("env, missing, message", [
    ({}, None, "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set"),
    ({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}, "token", "token"),
    ({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}, "ca.crt", "ca.crt"),
])
def test_in_cluster_errors(env, missing, message, tmp_path):
    sa = _service_account(tmp_path)
    if missing:
        (sa / missing).unlink()
    with pytest.raises(KubeconfigError, match=message):
        kubeconfig.in_cluster(env, directory=str(sa))


# --- errors: where the oracle refuses, so do we, in one line without secrets ---------------------

def _no_current_context(d):
    path = write_config(d, {"server": "https://127.0.0.1:6443"}, {"token": SECRET})
    document = yaml.safe_load(Path(path).read_text())
    del document["current-context"]
    Path(path).write_text(yaml.safe_dump(document))
    return path, "no current-context"


def _unknown_cluster(d):
    path = write_config(d, {"server": "https://127.0.0.1:6443"}, {"token": SECRET})
    document = yaml.safe_load(Path(path).read_text())
    document["contexts"][0]["context"]["cluster"] = "elsewhere"
    Path(path).write_text(yaml.safe_dump(document))
    return path, "no entry named 'elsewhere' in clusters"


def _missing_ca_file(d):
    return write_config(d, {"server": "https://127.0.0.1:6443", "certificate-authority": "nowhere/ca.crt"},
                        {"token": SECRET}), "certificate-authority .*nowhere/ca.crt: cannot read it"


def _missing_token_file(d):
    return write_config(d, {"server": "https://127.0.0.1:6443"}, {"tokenFile": "absent"}), "absent"


def _not_yaml(d):
    (d / "kubeconfig").write_text("clusters: [unclosed\n")
    return str(d / "kubeconfig"), "not a YAML document"


ERRORS = {f.__name__.strip("_"): f for f in (_no_current_context, _unknown_cluster, _missing_ca_file,
                                              _missing_token_file, _not_yaml)}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_kubeconfigs_both_refuse(case, tmp_path):
    path, message = ERRORS[case](tmp_path)
    with pytest.raises(Exception):
        oracle(path)
    with pytest.raises(KubeconfigError, match=message) as raised:
        kubeconfig.load(path)
    text = str(raised.value)
    assert text.startswith(f"kubeconfig {path}: ") and "\n" not in text and SECRET not in text


@pytest.mark.parametrize("cluster, user, message", [
    ({"server": "https://x:1", "certificate-authority-data": b64("not a certificate")}, {},
     "the certificate authority is not PEM certificates"),
    ({"server": "https://x:1", "insecure-skip-tls-verify": True},
     {"client-certificate-data": b64(PAIR.cert_pem), "client-key-data": b64(OTHER.key_pem)},
     "not a PEM pair that belongs together"),
    ({"server": "ftp://x:1"}, {}, "is not an http\\(s\\) URL"),
    ({"server": "https://x:1"}, {"auth-provider": {"name": "oidc", "config": {"id-token": SECRET}}},
     "auth-provider 'oidc' is not supported"),
    ({"server": "https://x:1"}, {"as": "admin", "token": SECRET}, "impersonation"),
    ({"server": "https://x:1", "proxy-url": "socks5://p:1080"}, {}, "only http and https proxies"),
    ({"server": "https://x:1"}, {"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}},
     "v1alpha1' is not supported"),
])
def test_what_vkcmd_refuses_is_said_in_one_line(cluster, user, message, tmp_path):
    path = write_config(tmp_path, cluster, user)
    with pytest.raises(KubeconfigError, match=message) as raised:
        kubeconfig.load(path)
    assert "\n" not in str(raised.value) and SECRET not in str(raised.value)


def test_data_is_never_written_to_a_file(tmp_path, monkeypatch):
    """Certificate, key and CA given as data stay in memory; the kubernetes client writes them to temp files."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    pki = ClusterPKI()  # material the oracle has not seen (it keeps one temp file per content)
    pair = pki.issue_client_cert("fresh")
    path = write_config(tmp_path, {"server": "https://127.0.0.1:6443",
                                   "certificate-authority-data": b64(pki.ca_cert_pem)},
                        {"client-certificate-data": b64(pair.cert_pem), "client-key-data": b64(pair.key_pem)})
    ours = kubeconfig.load(path)
    ours.ssl_context(ours.client_pair())
    ca_file = ours.ca_file()
    assert ca_file.startswith("/proc/self/fd/") and Path(ca_file).read_bytes() == pki.ca_cert_pem
    assert list(spool.iterdir()) == []
    ours.close()
    oracle(path)
    assert len(list(spool.iterdir())) == 3  # the oracle's CA, certificate and key, in files
