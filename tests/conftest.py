"""Shared fixtures: one kubelite control plane per test module, real clients against it.

``control_plane`` is a started :class:`tools.kubelite.ControlPlane` (real HTTPS,
real certs) in a temporary directory; ``kube_client`` is a real
``kubernetes.client.ApiClient`` from its admin kubeconfig; ``kubectl`` runs
the real ``/usr/bin/kubectl`` against it (skipped when kubectl is absent);
``namespace`` gives a test its own namespace (with a ``default`` service
account) and deletes it afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    from tools.kubelite import ControlPlane

    with ControlPlane(str(tmp_path_factory.mktemp("kubelite"))) as cp:
        yield cp


@pytest.fixture(scope="module")
def kube_client(control_plane):
    from kubernetes import config

    client = config.new_client_from_config(config_file=control_plane.kubeconfig)
    try:
        yield client
    finally:
        client.close()


class Kubectl:
    """Runs kubectl against one control plane; returns the CompletedProcess (text mode)."""

    def __init__(self, binary: str, kubeconfig: str, cache_dir: str):
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.cache_dir = cache_dir

    def __call__(self, *args: str, input: str | None = None, timeout: float = 30,
                 check: bool = False) -> subprocess.CompletedProcess:
        cmd = [self.binary, "--kubeconfig", self.kubeconfig, "--cache-dir", self.cache_dir, *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def with_kubeconfig(self, kubeconfig: str) -> "Kubectl":
        """The same kubectl as another identity."""
        return Kubectl(self.binary, kubeconfig, self.cache_dir)


@pytest.fixture(scope="module")
def kubectl(control_plane, tmp_path_factory):
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not installed")
    return Kubectl(binary, control_plane.kubeconfig, str(tmp_path_factory.mktemp("kubectl-cache")))


def ensure_service_account(core, namespace: str, name: str = "default", timeout: float = 5.0) -> None:
    """Wait for the controllers' service account, creating it when none arrives (no controllers)."""
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account(name, namespace)
            return
        except ApiException as e:
            if e.status != 404:
                raise
        if time.monotonic() > deadline:
            try:
                core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
            except ApiException as e:
                if e.status != 409:
                    raise
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def ensure_sa(control_plane, kube_client):
    """``ensure_sa(namespace)``: the namespace's ``default`` service account exists on return."""
    from kubernetes import client

    core = client.CoreV1Api(kube_client)
    timeout = 2.0 if control_plane.controllers_running else 0.0
    return lambda namespace, name="default": ensure_service_account(core, namespace, name, timeout)


@pytest.fixture
def namespace(control_plane, kube_client):
    """A fresh namespace with its ``default`` service account; deleted after the test."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(kube_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    ensure_service_account(core, name, timeout=2.0 if control_plane.controllers_running else 0.0)
    yield name
    try:
        for pod in core.list_namespaced_pod(name).items:
            core.delete_namespaced_pod(pod.metadata.name, name, grace_period_seconds=0)
        core.delete_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise
