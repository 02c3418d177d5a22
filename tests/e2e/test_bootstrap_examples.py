"""A node joined with only a bootstrap token runs every example end to end, as system:node:<name>.

The node gets a bootstrap kubeconfig from ``python -m tools.kubelite token create`` (the operator's step) and
nothing else; vkcmd obtains its client certificate by CSR and writes its own kubeconfig. The examples'
expected outcomes are the checks of test_examples.py and test_jobs.py, run here against this node.
"""

from __future__ import annotations

import os
import stat

import pytest
import yaml

from tests.e2e import test_examples as examples
from tests.e2e.node import EXAMPLES, Node
from tests.e2e.test_jobs import check_example_job

NAME = "vk-joined"


@pytest.fixture(scope="module")
def node(control_plane, tmp_path_factory):
    """The ``node`` the checks imported below run against: joined with a bootstrap token only."""
    workdir = tmp_path_factory.mktemp("vk-bootstrap")
    running = Node(control_plane, workdir, name=NAME, identity="bootstrap")
    assert not os.path.exists(running.kubeconfig)
    running.start()
    yield running
    assert running.stop() == 0, running.log()


# every example's checks, each run against the joined node above (the same functions as test_examples.py)
test_secret_pod_runs_the_script_with_env_and_logs = examples.test_secret_pod_runs_the_script_with_env_and_logs
test_stress_pod_burns_and_reports = examples.test_stress_pod_burns_and_reports
test_affinity_pod_is_placed_by_jiriaf_labels = examples.test_affinity_pod_is_placed_by_jiriaf_labels
test_deployment_pods_run_ready_and_go_away_with_it = examples.test_deployment_pods_run_ready_and_go_away_with_it
test_sidecar_pod_serves_readiness_and_leaves_a_termination_message = \
    examples.test_sidecar_pod_serves_readiness_and_leaves_a_termination_message


def test_job_example_completes(node, kubectl, namespace):
    check_example_job(node, kubectl, namespace)


COVERED = {"secret-pod.yaml": test_secret_pod_runs_the_script_with_env_and_logs,
           "stress-pod.yaml": test_stress_pod_burns_and_reports,
           "affinity-pod.yaml": test_affinity_pod_is_placed_by_jiriaf_labels,
           "deployment.yaml": test_deployment_pods_run_ready_and_go_away_with_it,
           "sidecar-pod.yaml": test_sidecar_pod_serves_readiness_and_leaves_a_termination_message,
           "job.yaml": test_job_example_completes}


def test_every_example_is_run_here():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(COVERED)


def test_the_written_kubeconfig_is_private_and_the_token_not_logged(node):
    for written in (node.kubeconfig, node.kubeconfig + "-client-current.pem"):
        assert stat.S_IMODE(os.stat(written).st_mode) == 0o600, written
    bootstrap = yaml.safe_load(open(node.env["VK_BOOTSTRAP_KUBECONFIG"]))
    token = bootstrap["users"][0]["user"]["token"]
    assert token.split(".")[1] not in node.log()


def test_the_written_kubeconfig_is_the_node(node, kubectl):
    whoami = yaml.safe_load(kubectl.with_kubeconfig(node.kubeconfig)("auth", "whoami", "-o", "yaml",
                                                                      check=True).stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:node:{NAME}"
    assert "system:nodes" in whoami["status"]["userInfo"]["groups"]
