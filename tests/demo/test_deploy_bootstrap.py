"""deploy/README.md's node-identity path, run as written: the operator's commands, then a node that joins with
the bootstrap kubeconfig they made and nothing else, as ``system:node:<name>``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.e2e.node import REPO, Node

DEPLOY = REPO / "deploy" / "README.md"


def operator_blocks() -> tuple[list[str], str]:
    """The bash blocks of section 1 an operator runs, and the batch node's block (run by the test's Node)."""
    text = DEPLOY.read_text()
    section = text[text.index("## 1."):text.index("## 2.")]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    batch = [b for b in blocks if "tools/start.sh" in b]
    assert len(batch) == 1 and len(blocks) >= 3, blocks
    return [b for b in blocks if b not in batch], batch[0]


def test_the_deploy_recipe_joins_a_node_with_a_bootstrap_token_only(control_plane, kubectl, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    operator, batch = operator_blocks()
    script = "set -euo pipefail\n" + "\n".join(operator) + '\necho "TOKEN=$TOKEN_ID.$TOKEN_SECRET"\n'
    env = {**os.environ, "KUBECONFIG": control_plane.kubeconfig, "KUBECACHEDIR": str(tmp_path / "cache")}
    (tmp_path / "deploy").symlink_to(REPO / "deploy")  # the commands name deploy/... from a checkout
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    token = re.search(r"^TOKEN=(\S+)$", proc.stdout, re.M).group(1)
    bootstrap = tmp_path / "bootstrap.kubeconfig"
    config = yaml.safe_load(bootstrap.read_text())
    assert [u["user"] for u in config["users"]] == [{"token": token}]  # the token, no other credential
    assert "client-key-data" not in bootstrap.read_text()

    # the batch node's step, with the variables the block sets
    assert "VK_BOOTSTRAP_KUBECONFIG=bootstrap.kubeconfig" in batch and "KUBECONFIG=$HOME/.vkcmd/node.kubeconfig" in batch
    home = tmp_path / "batch" / "home"
    node = Node(control_plane, tmp_path / "batch", name="nid001", identity="bootstrap",
                VK_BOOTSTRAP_KUBECONFIG=str(bootstrap), KUBECONFIG=str(home / ".vkcmd" / "node.kubeconfig"))
    assert not os.path.exists(node.kubeconfig)
    try:
        node.start()
        whoami = yaml.safe_load(kubectl.with_kubeconfig(node.kubeconfig)("auth", "whoami", "-o", "yaml",
                                                                          check=True).stdout)
        assert whoami["status"]["userInfo"]["username"] == "system:node:nid001"
        assert token.split(".")[1] not in node.log()
    finally:
        assert node.stop() == 0, node.log()[-3000:]
