"""Settings: environment, flag overrides, and the exit-2 one-liners of bad values."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vkcmd import config

REPO = Path(__file__).resolve().parents[2]

KUBECONFIG_TEXT = """apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: u
  user: {}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
"""


@pytest.fixture
def kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG_TEXT)
    return str(path)


@pytest.fixture
def base_env(tmp_path, kubeconfig):
    return {"HOME": str(tmp_path), "KUBECONFIG": kubeconfig}


def run_vkcmd(args, env):
    full_env = {"PATH": os.environ["PATH"], **env}
    return subprocess.run([sys.executable, "-m", "vkcmd", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_seed_launch_line_is_accepted(base_env):
    settings = config.load(["--nodename", "vk", "--provider", "mock", "--klog.v", "3"], base_env)
    assert (settings.node_name, settings.provider, settings.verbosity) == ("vk", "mock", 3)


def test_defaults(base_env, tmp_path):
    settings = config.load([], {**base_env, "NODENAME": "n1"})
    assert settings.kubelet_port == 10250
    assert settings.walltime == 0
    assert settings.max_pods == 1000
    assert settings.workspace_root == str(tmp_path)
    assert settings.state_dir == str(tmp_path / ".vkcmd" / "n1")
    assert settings.authorization_mode == "Webhook"
    assert settings.log_format == "logfmt"
    assert not settings.delete_node_on_exit


def test_environment_is_read_and_flags_override_it(base_env):
    env = {**base_env, "NODENAME": "from-env", "KUBELET_PORT": "10255", "JIRIAF_WALLTIME": "120",
           "JIRIAF_NODETYPE": "cpu", "JIRIAF_SITE": "Local", "VKUBELET_POD_IP": "10.1.2.3"}
    settings = config.load(["--nodename", "from-flag", "--delete-node-on-exit"], env)
    assert settings.node_name == "from-flag"
    assert (settings.kubelet_port, settings.walltime, settings.node_type, settings.site, settings.pod_ip) == (
        10255, 120, "cpu", "Local", "10.1.2.3")
    assert settings.delete_node_on_exit


def test_walltime_not_multiple_of_60_warns(base_env):
    settings = config.load([], {**base_env, "JIRIAF_WALLTIME": "90"})
    assert any("multiple of 60" in w for w in settings.warnings)


def test_loopback_pod_ip_warns(base_env):
    settings = config.load([], {**base_env, "VKUBELET_POD_IP": "127.0.0.1"})
    assert any("loopback" in w for w in settings.warnings)


def test_missing_kubeconfig_without_in_cluster_is_an_error(tmp_path):
    with pytest.raises(config.ConfigError) as caught:
        config.load([], {"HOME": str(tmp_path)})
    assert caught.value.setting == "KUBECONFIG"


def test_in_cluster_when_no_kubeconfig_and_service_host_set(tmp_path):
    settings = config.load([], {"HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert settings.in_cluster


def test_home_kubeconfig_is_the_default(tmp_path):
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(KUBECONFIG_TEXT)
    settings = config.load([], {"HOME": str(tmp_path)})
    assert settings.kubeconfig == str(tmp_path / ".kube" / "config")


BAD = [
    ({"JIRIAF_WALLTIME": "abc"}, [], "JIRIAF_WALLTIME", "'abc'", "integer >= 0"),
    ({"JIRIAF_WALLTIME": "-60"}, [], "JIRIAF_WALLTIME", "'-60'", "integer >= 0"),
    ({"KUBELET_PORT": "70000"}, [], "KUBELET_PORT", "'70000'", "from 1 to 65535"),
    ({"KUBELET_PORT": "0"}, [], "KUBELET_PORT", "'0'", "from 1 to 65535"),
    ({}, ["--kubelet-port", "http"], "--kubelet-port", "'http'", "from 1 to 65535"),
    ({"APISERVER_CERT_LOCATION": "/nonexistent/cert.pem", "APISERVER_KEY_LOCATION": "/etc/hostname"}, [],
     "APISERVER_CERT_LOCATION", "/nonexistent/cert.pem", "existing file"),
    ({"APISERVER_CA_CERT_LOCATION": "/nonexistent/ca.pem"}, [], "APISERVER_CA_CERT_LOCATION", "ca.pem",
     "existing file"),
    ({"KUBECONFIG": "/nonexistent/kubeconfig"}, [], "KUBECONFIG", "/nonexistent/kubeconfig", "existing file"),
    ({"VKUBELET_POD_IP": "not-an-ip"}, [], "VKUBELET_POD_IP", "'not-an-ip'", "IPv4 or IPv6"),
    ({"NODENAME": "Bad_Name"}, [], "NODENAME", "'Bad_Name'", "DNS-1123"),
    ({"JIRIAF_SITE": "has space"}, [], "JIRIAF_SITE", "'has space'", "label value"),
    ({"VK_LOG_FORMAT": "xml"}, [], "VK_LOG_FORMAT", "'xml'", "logfmt, json"),
    ({"VK_CPU": "lots"}, [], "VK_CPU", "'lots'", "quantity"),
    ({}, ["--klog.v", "loud"], "--klog.v", "'loud'", "integer from 0 to 10"),
]


@pytest.mark.parametrize("env, args, setting, value, accepted", BAD, ids=[b[2] + ":" + str(b[3]) for b in BAD])
def test_bad_settings_stop_start_up_with_one_line(base_env, env, args, setting, value, accepted):
    result = run_vkcmd(args, {**base_env, **env})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0] and value in lines[0] and accepted in lines[0]
    assert result.stdout == ""


def test_unreadable_kubeconfig_is_refused(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text("clusters: [unterminated")
    result = run_vkcmd([], {"HOME": str(tmp_path), "KUBECONFIG": str(path)})
    assert result.returncode == 2
    assert "KUBECONFIG" in result.stderr and "kubeconfig" in result.stderr


def test_cert_without_key_is_refused(base_env, tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    result = run_vkcmd([], {**base_env, "APISERVER_CERT_LOCATION": str(cert)})
    assert result.returncode == 2
    assert "APISERVER_KEY_LOCATION" in result.stderr


def test_help_lists_every_setting_with_its_variable():
    result = run_vkcmd(["--help"], {"HOME": "/tmp"})
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for setting in config.SETTINGS:
        assert setting.flags[0] in text
        if setting.env:
            assert f"[{setting.env}]" in text
        assert "default" in setting.help


def test_walltime_from_slurm_job_end_time(base_env):
    import time as _time

    env = {**base_env, "SLURM_JOB_ID": "123", "SLURM_JOB_END_TIME": str(int(_time.time()) + 3600)}
    settings = config.load([], env)
    assert 3590 <= settings.walltime <= 3600
    assert any("Slurm job 123" in w for w in settings.warnings)


def test_walltime_from_squeue_when_slurm_has_no_end_time(base_env, tmp_path):
    squeue = tmp_path / "bin" / "squeue"
    squeue.parent.mkdir()
    squeue.write_text('#!/bin/sh\n[ "$1 $2 $3 $4 $5" = "-h -j 77 -o %L" ] && echo "1-02:03:04"\n')
    squeue.chmod(0o755)
    env = {**base_env, "SLURM_JOB_ID": "77", "PATH": f"{squeue.parent}:{os.environ['PATH']}"}
    assert config.load([], env).walltime == ((24 + 2) * 60 + 3) * 60 + 4


def test_explicit_walltime_wins_over_slurm(base_env):
    env = {**base_env, "SLURM_JOB_ID": "5", "SLURM_JOB_END_TIME": "9999999999", "JIRIAF_WALLTIME": "120"}
    assert config.load([], env).walltime == 120


@pytest.mark.parametrize("text, seconds", [("5:00", 300), ("1:00:00", 3600), ("2-00:00:01", 172801),
                                           ("UNLIMITED", None), ("NOT_SET", None)])
def test_squeue_time_left_format(text, seconds):
    from vkcmd.slurm import parse_time_left

    assert parse_time_left(text) == seconds


def test_a_bootstrap_kubeconfig_lets_kubeconfig_not_exist_yet(base_env, kubeconfig, tmp_path):
    future = tmp_path / "later" / "node.kubeconfig"
    settings = config.load([], {**base_env, "KUBECONFIG": str(future), "VK_BOOTSTRAP_KUBECONFIG": kubeconfig})
    assert settings.kubeconfig == str(future) and settings.bootstrap_kubeconfig == kubeconfig
    with pytest.raises(config.ConfigError, match="expected the path of an existing file"):
        config.load([], {**base_env, "KUBECONFIG": str(future)})


def test_a_bootstrap_kubeconfig_needs_kubeconfig_to_say_where_to_write(tmp_path, kubeconfig):
    with pytest.raises(config.ConfigError, match="expected KUBECONFIG with VK_BOOTSTRAP_KUBECONFIG"):
        config.load(["--bootstrap-kubeconfig", kubeconfig], {"HOME": str(tmp_path)})
