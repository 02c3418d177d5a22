"""``tools/start.sh`` in the JIRIAF image's positional form launches a real node (issue 15)."""

from __future__ import annotations

import subprocess

from tests.demo.test_start import START, Script, clean_env
from tests.e2e.node import free_port


def test_positional_form_starts_a_node_with_serving_pair_from_the_current_directory(control_plane, tmp_path):
    """start.sh KUBECONFIG NODENAME VKUBELET_POD_IP KUBELET_PORT WALLTIME NODETYPE SITE, client.crt/.key in cwd."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "client.key"), "-out", str(tmp_path / "client.crt"), "-days", "1",
                    "-subj", "/CN=vk-jiriaf-pos", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    port = str(free_port())
    # the environment says otherwise: the arguments win, as in the JIRIAF image's script
    env = clean_env(control_plane, tmp_path, NODENAME="not-this-one", JIRIAF_SITE="env-site")
    argv = ["bash", str(START), control_plane.kubeconfig, "vk-jiriaf-pos", "127.0.0.1", port, "600", "gpu", "jlab"]
    script = Script(argv, env, tmp_path, "vk-jiriaf-pos", control_plane.kubeconfig)
    try:
        node = script.wait_ready()
        labels = node["metadata"]["labels"]
        assert (labels["jiriaf.nodetype"], labels["jiriaf.site"], labels["jiriaf.walltime"]) == ("gpu", "jlab", "600")
        assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == int(port)
        assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
        served = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}"], input="",
                                capture_output=True, text=True, timeout=20).stdout
        assert "CN = vk-jiriaf-pos" in served or "CN=vk-jiriaf-pos" in served, served
        assert (tmp_path / "vk-jiriaf-pos.log").exists() and not (tmp_path / "not-this-one.log").exists()
    finally:
        assert script.stop() == 0, script.log()


def test_positional_form_with_too_few_arguments_is_a_usage_error(tmp_path):
    proc = subprocess.run(["bash", str(START), "kubeconfig", "vk-x"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "KUBECONFIG NODENAME VKUBELET_POD_IP" in proc.stderr
    assert not (tmp_path / "vk-x.log").exists()
