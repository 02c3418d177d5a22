"""kubelite: a small in-memory Kubernetes control plane — a TEST AND DEMO TOOL, not a product.

No real cluster is reachable from vkcmd's development machines, so the tests
and the demo run against this: an HTTPS server speaking the real Kubernetes
REST protocol (discovery, CRUD, status subresources, watches with
resourceVersion, patches, graceful pod deletion, leases, events, TokenRequest /
TokenReview, SubjectAccessReview from RBAC, pods/log proxied to the node's
kubelet) to the real ``kubernetes`` Python client and to ``kubectl``, plus the
controllers a default cluster runs (scheduler, deployments, node lifecycle,
...). Everything lives in memory and is gone when it stops. Production is a
real cluster.

Layers: ``errors``/``resources``/``certs``/``tokens``/``quantity``/``csr`` (leaves) <- ``store``
<- ``nodegraph`` <- ``nodeauthz`` (Node authorizer), ``admission`` (a module per plugin) <- ``strategy``,
``policy`` (seam to patch/selectors/admission/rbac/Node authorizer/NodeRestriction) <- ``api``,
``subresources``, ``reviews``, ``tables``, ``discovery``, ``logproxy`` <-
``server`` (HTTP) <- :class:`ControlPlane` (wiring, this module).
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import threading

import yaml

from . import errors, policy
from .api import Api
from .certs import (ADMIN_GROUPS, ADMIN_USER, KUBELET_CLIENT_GROUPS, KUBELET_CLIENT_USER, CertPair, ClusterPKI,
                    write_pair)
from .logproxy import kubelet_context
from .resources import lookup
from .server import App, KubeliteServer
from .store import Store
from .tokens import TokenSigner

__all__ = ["ControlPlane", "CertPair"]

log = logging.getLogger(__name__)

DEFAULT_NODE_TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class ControlPlane:
    """One control plane in ``dir``: certs, HTTPS server, bootstrap objects, controllers.

    Construction has no side effects; :meth:`start` (or ``with``) brings it up and
    :meth:`stop` joins every thread it started. Attributes after start: ``url``,
    ``kubeconfig`` (admin, certs embedded), ``ca_cert_path``, ``port``, and ``store``
    / ``api`` for white-box checks only.
    """

    def __init__(self, dir: str, port: int = 0, lease_grace: float = 40.0, scheduler: bool = True, *,
                 controllers: bool = True, watch_history: int = 10000, host: str = "127.0.0.1",
                 bookmark_interval: float = 60.0, csr_max_seconds: int = 365 * 24 * 3600):
        self.dir = os.path.abspath(dir)
        self.host = host
        self.requested_port = port
        self.lease_grace = lease_grace
        self.scheduler = scheduler
        self.run_controllers = controllers
        self.watch_history = watch_history
        self.bookmark_interval = bookmark_interval
        self.csr_max_seconds = csr_max_seconds  # kube-controller-manager's --cluster-signing-duration
        self.port: int | None = None
        self.url: str | None = None
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.ca_cert_path = os.path.join(self.dir, "ca.crt")
        self.store: Store | None = None
        self.api: Api | None = None
        self._pki: ClusterPKI | None = None
        self._server: KubeliteServer | None = None
        self._app: App | None = None
        self._thread: threading.Thread | None = None
        self._controllers = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "ControlPlane":
        if self._server is not None:
            raise RuntimeError("control plane already started")
        os.makedirs(self.dir, exist_ok=True)
        pki = self._pki = ClusterPKI()
        pki.write(self.dir)
        serving = pki.issue_server_cert((self.host, "127.0.0.1", "localhost", "::1"))
        serving_paths = (os.path.join(self.dir, "apiserver.crt"), os.path.join(self.dir, "apiserver.key"))
        write_pair(serving, *serving_paths)
        kubelet_client = pki.issue_client_cert(KUBELET_CLIENT_USER, KUBELET_CLIENT_GROUPS)
        kc_paths = (os.path.join(self.dir, "apiserver-kubelet-client.crt"),
                    os.path.join(self.dir, "apiserver-kubelet-client.key"))
        write_pair(kubelet_client, *kc_paths)

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*serving_paths)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cadata=pki.ca_cert_pem.decode())

        self.store = Store(history=self.watch_history)
        self.api = Api(self.store)
        self._bootstrap()
        self._app = App(self.api, TokenSigner(), kubelet_context(*kc_paths),
                        bookmark_interval=self.bookmark_interval)
        self._server = KubeliteServer((self.host, self.requested_port), ctx, self._app)
        self.port = self._server.server_address[1]
        self.url = f"https://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="kubelite-accept", daemon=True)
        self._thread.start()
        try:
            self.write_kubeconfig(self.kubeconfig, ADMIN_USER, ADMIN_GROUPS)
            if self.run_controllers:
                self._start_controllers()
        except BaseException:
            self.stop()
            raise
        log.info("kubelite serving %s", self.url)
        return self

    def _start_controllers(self) -> None:
        from . import controllers  # imported here: the controllers are API clients (kubernetes package)

        self._controllers = controllers.start(self.kubeconfig, lease_grace=self.lease_grace,
                                              scheduler=self.scheduler, csr_sign=self._pki.sign_request,
                                              csr_max_seconds=self.csr_max_seconds)

    def stop(self) -> None:
        """Stop controllers, end watches and log streams, close connections, join threads."""
        if self._controllers is not None:
            self._controllers.stop()
            self._controllers = None
        if self._server is None:
            return
        self._app.stopping.set()
        self._server.shutdown()
        self.store.close()
        self._app.close_upstreams()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None

    @property
    def controllers_running(self) -> bool:
        return self._controllers is not None

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- identities ------------------------------------------------------------
    def issue_client_cert(self, cn: str, groups=()) -> CertPair:
        """A client certificate signed by the cluster CA (user ``cn``, groups ``groups``)."""
        return self._pki.issue_client_cert(cn, tuple(groups))

    def issue_serving_cert(self, hosts=("127.0.0.1", "localhost")) -> CertPair:
        """A serving certificate signed by the cluster CA (e.g. for a test kubelet)."""
        return self._pki.issue_server_cert(tuple(hosts))

    def write_kubeconfig(self, path: str, cn: str | None = None, groups=(), *, token: str | None = None,
                         namespace: str = "default") -> str:
        """Write a kubeconfig for a new cert identity (``cn``, ``groups``) or a bearer ``token``."""
        if token is not None:
            user, creds = "token-user", {"token": token}
        else:
            pair = self.issue_client_cert(cn, groups)
            user, creds = cn, {"client-certificate-data": _b64(pair.cert_pem),
                               "client-key-data": _b64(pair.key_pem)}
        cfg = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "kubelite", "cluster": {
                "server": self.url, "certificate-authority-data": _b64(self._pki.ca_cert_pem)}}],
            "users": [{"name": user, "user": creds}],
            "contexts": [{"name": f"{user}@kubelite",
                          "context": {"cluster": "kubelite", "user": user, "namespace": namespace}}],
            "current-context": f"{user}@kubelite",
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        return path

    def node_kubeconfig(self, path: str, node_name: str) -> str:
        """A kubeconfig for the kubelet identity ``system:node:<node_name>`` (group ``system:nodes``)."""
        return self.write_kubeconfig(path, f"system:node:{node_name}", ("system:nodes",))

    def create_bootstrap_token(self, ttl: float | None = 3600.0, *,
                               extra_groups=(DEFAULT_NODE_TOKEN_GROUP,)) -> str:
        """A bootstrap token as ``kubeadm token create`` makes it (Secret in kube-system); returns the token."""
        from .cli_token import token_secret

        token, secret = token_secret(ttl, extra_groups)
        self.api.create(lookup("", "v1", "secrets"), "kube-system", secret)
        return token

    def bootstrap_kubeconfig(self, path: str, ttl: float | None = 3600.0) -> str:
        """A new bootstrap token's kubeconfig, as ``kubeadm join`` writes ``bootstrap-kubelet.conf``."""
        return self.write_kubeconfig(path, token=self.create_bootstrap_token(ttl))

    # -- bootstrap -------------------------------------------------------------
    def _bootstrap(self) -> None:
        ns_res = lookup("", "v1", "namespaces")
        for name in SYSTEM_NAMESPACES:
            self.api.create(ns_res, "", {"metadata": {"name": name}})
        objects = list(policy.bootstrap_objects())
        objects.append(("clusterrolebindings", _binding("kube-apiserver-kubelet-client", "system:kubelet-api-admin",
                                                        "User", KUBELET_CLIENT_USER)))
        objects.append(("clusterrolebindings", _binding("kubeadm:cluster-admins", "cluster-admin", "Group",
                                                        "kubeadm:cluster-admins")))
        objects.extend(_kubeadm_node_bindings())
        for plural, obj in objects:
            res = lookup("rbac.authorization.k8s.io", "v1", plural)
            try:
                self.api.create(res, "", obj)
            except errors.ApiError as e:
                if e.code != 409:
                    raise


def _kubeadm_node_bindings() -> list[tuple[str, dict]]:
    """What ``kubeadm init`` creates so that bootstrap tokens can join nodes (TLS bootstrapping)."""
    get_nodes = {"metadata": {"name": "kubeadm:get-nodes"},
                 "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]}
    return [
        ("clusterroles", get_nodes),
        ("clusterrolebindings", _binding("kubeadm:get-nodes", "kubeadm:get-nodes", "Group",
                                         DEFAULT_NODE_TOKEN_GROUP)),
        ("clusterrolebindings", _binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", "Group",
                                         DEFAULT_NODE_TOKEN_GROUP)),
        ("clusterrolebindings", _binding("kubeadm:node-autoapprove-bootstrap",
                                         "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                                         "Group", DEFAULT_NODE_TOKEN_GROUP)),
        ("clusterrolebindings", _binding("kubeadm:node-autoapprove-certificate-rotation",
                                         "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                                         "Group", "system:nodes")),
    ]


def _binding(name: str, role: str, kind: str, subject: str) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}]}
