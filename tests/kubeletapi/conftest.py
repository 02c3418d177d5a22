"""Fixtures of the kubelet API tests: a test CA and client certs, a real backend, a started server.

``pki`` is a CA (``tools.kubelite.certs.ClusterPKI``) whose certificates the
server accepts; ``cert`` issues client cert files for (cn, groups); ``backend``
is the shipped ``serving.NodeBackend`` on a real runtime (:class:`~.node.TestNode`); ``serve``
starts a :class:`KubeletServer` (real HTTPS on 127.0.0.1, port 0) and stops it
at teardown; ``get`` is a small HTTPS client returning (status, headers, body).
"""

from __future__ import annotations

import http.client
import ssl
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tools.kubelite.certs import ClusterPKI, write_pair
from vkcmd.kubeletapi import tls
from vkcmd.kubeletapi.auth import Authenticator, Authorizer
from vkcmd.kubeletapi.metrics import Metrics
from vkcmd.kubeletapi.server import KubeletServer

from .node import TestNode

BUSY = [sys.executable, "-c", "import time\nend = time.time() + 60\nwhile time.time() < end: pass"]
SLEEP = ["sleep", "60"]


class LocalPKI:
    """A CA on disk, a serving pair for 127.0.0.1 and client pairs on demand."""

    def __init__(self, directory: Path, name: str = "kubeletapi-test-ca") -> None:
        self.directory = directory
        self.ca = ClusterPKI(name)
        self.ca_cert, _ = self.ca.write(str(directory))
        self.serving = self._write(self.ca.issue_server_cert(("127.0.0.1", "localhost")), "serving")

    def _write(self, pair, stem: str) -> tuple[str, str]:
        cert, key = str(self.directory / f"{stem}.crt"), str(self.directory / f"{stem}.key")
        write_pair(pair, cert, key)
        return cert, key

    def client(self, cn: str, groups=()) -> tuple[str, str]:
        return self._write(self.ca.issue_client_cert(cn, tuple(groups)), f"client-{cn.replace(':', '_')}")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return LocalPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    node = TestNode(tmp_path_factory.mktemp("node"))
    yield node
    node.close()


@pytest.fixture
def serve(pki):
    """Factory: a started KubeletServer over ``backend`` (AlwaysAllow unless ``review_access`` is given)."""
    started = []

    def start(backend, *, review_token=None, review_access=None, registry=None, **options):
        context = tls.server_context(*pki.serving, pki.ca_cert)
        registry = registry if registry is not None else CollectorRegistry()
        server = KubeletServer(node_name=options.pop("node_name", "vk-test"), backend=backend, ssl_context=context,
                               authenticator=Authenticator(review_token),
                               authorizer=Authorizer(options.pop("authz_node", "vk-test"), review_access),
                               metrics=options.pop("metrics", None) or Metrics(registry), address="127.0.0.1",
                               port=0, **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def client_context(pki: LocalPKI, cert: tuple[str, str] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca_cert)
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


@pytest.fixture
def get(pki):
    """(server, path, cert=(crt, key) | None, token=None, method="GET") -> (status, headers, body)."""

    def request(server, path, cert=None, token=None, method="GET", timeout=10.0):
        connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(pki, cert),
                                                 timeout=timeout)
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    return request


@pytest.fixture(scope="module")
def admin_cert(pki):
    return pki.client("tester", ["system:masters"])
