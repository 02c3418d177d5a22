"""Joining from a bootstrap token, as ``kubeadm join`` does: the node's client certificate by CSR, and renewal.

When KUBECONFIG does not exist or its client certificate has expired, a key is
made here, a CertificateSigningRequest for ``system:node:<name>`` (group
``system:nodes``, signer ``kubernetes.io/kube-apiserver-client-kubelet``) is posted
with the bootstrap credentials, and once it is approved and issued the key and
certificate (one PEM file) and a kubeconfig naming them are written next to
KUBECONFIG, 0600, atomically. :class:`CertificateRotation` renews the certificate
with the node's own identity before it expires. Credentials are never logged.
"""

from __future__ import annotations

import base64
import datetime
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from vkcmd import certfacts, keymaker
from vkcmd.backoff import Backoff
from vkcmd.kube.client import ApiError, KubeClient

log = logging.getLogger("vkcmd.kube.bootstrap")

CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
RENEW_AT = 0.8  # of a certificate's life, as the kubelet (70-90 %)


class BootstrapError(RuntimeError):
    """No certificate: the CSR was denied, failed, or not issued in time (the message says which)."""


# --- files ---------------------------------------------------------------------------------

def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600 (a temporary file in the same directory, renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def credentials_path(kubeconfig: str) -> Path:
    """Where the node's key and certificate live: next to its kubeconfig (the kubelet's ``-client-current.pem``)."""
    path = Path(kubeconfig)
    return path.with_name(f"{path.name}-client-current.pem")


def _current_user(config: dict[str, Any]) -> dict[str, Any]:
    context_name = config.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or []}
    context = contexts.get(context_name) or next(iter(contexts.values()), {})
    users = {u.get("name"): u.get("user") or {} for u in config.get("users") or []}
    return users.get(context.get("user")) or {}


def _current_cluster(config: dict[str, Any], base: Path) -> dict[str, Any]:
    context_name = config.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or []}
    context = contexts.get(context_name) or next(iter(contexts.values()), {})
    clusters = {c.get("name"): c.get("cluster") or {} for c in config.get("clusters") or []}
    cluster = dict(clusters.get(context.get("cluster")) or next(iter(clusters.values()), {}))
    authority = cluster.pop("certificate-authority", None)
    if authority:  # carried as data: the node's kubeconfig must not depend on the bootstrap file's directory
        cluster["certificate-authority-data"] = base64.b64encode((base / authority).read_bytes()).decode()
    return cluster


def client_certificate(kubeconfig: str) -> certfacts.CertificateFacts | None:
    """The client certificate the kubeconfig's current user presents, or None (none, or unreadable)."""
    try:
        path = Path(kubeconfig)
        config = yaml.safe_load(path.read_text()) or {}
        user = _current_user(config)
        if user.get("client-certificate-data"):
            pem = base64.b64decode(user["client-certificate-data"])
        elif user.get("client-certificate"):
            pem = (path.parent / user["client-certificate"]).read_bytes()
        else:
            return None
        return certfacts.facts(pem)
    except (OSError, ValueError, yaml.YAMLError, AttributeError):
        return None


def needs_bootstrap(kubeconfig: str, now: datetime.datetime | None = None) -> str | None:
    """Why the node must bootstrap (KUBECONFIG missing, its certificate expired), or None."""
    if not Path(kubeconfig).exists():
        return f"{kubeconfig} does not exist"
    cert = client_certificate(kubeconfig)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if cert is not None and cert.not_after <= now:
        return f"the client certificate of {kubeconfig} expired at {cert.not_after:%Y-%m-%dT%H:%M:%SZ}"
    return None


def write_node_kubeconfig(kubeconfig: str, cluster: dict[str, Any], key_pem: bytes, cert_pem: bytes) -> None:
    """The key and certificate (one PEM), then the kubeconfig that names them; both 0600, atomic."""
    pem = credentials_path(kubeconfig)
    write_private(pem, key_pem + cert_pem)
    config = {"apiVersion": "v1", "kind": "Config", "preferences": {},
              "clusters": [{"name": "default-cluster", "cluster": cluster}],
              "users": [{"name": "default-auth", "user": {"client-certificate": str(pem), "client-key": str(pem)}}],
              "contexts": [{"name": "default-context",
                            "context": {"cluster": "default-cluster", "user": "default-auth"}}],
              "current-context": "default-context"}
    write_private(Path(kubeconfig), yaml.safe_dump(config, sort_keys=False).encode())


# --- the request ---------------------------------------------------------------------------

def key_and_csr(common_name: str, organizations: Sequence[str], *, dns: Sequence[str] = (),
                ips: Sequence[str] = ()) -> tuple[bytes, bytes]:
    """A fresh P-256 key (PEM) and a CSR for it (PEM) with the given subject and alternative names
    (made in a child process: the node never maps ``cryptography``)."""
    try:
        return keymaker.key_and_csr(common_name, organizations, dns=dns, ips=ips)
    except keymaker.KeyMakerError as error:
        raise BootstrapError(str(error)) from None


def request_certificate(client: KubeClient, csr_pem: bytes, signer: str, usages: Sequence[str], *,
                        timeout: float, stop: threading.Event | None = None) -> bytes:
    """Post the CSR and wait (polling, bounded by ``timeout``) until it is issued; the certificate PEM."""
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "node-csr-"},
            "spec": {"request": base64.b64encode(csr_pem).decode(), "signerName": signer, "usages": list(usages)}}
    created = client.create(CSR_PATH, body)
    name = created["metadata"]["name"]
    log.info("certificate signing request %s posted (signer %s); waiting for approval", name, signer)
    stop = stop or threading.Event()
    until, backoff = time.monotonic() + timeout, Backoff(0.2, 2.0)
    while True:
        try:
            csr = client.get(f"{CSR_PATH}/{name}")
        except ApiError as error:
            if not error.retryable:
                raise BootstrapError(f"certificate signing request {name}: {error}") from None
            csr = {}
        status = csr.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") in ("Denied", "Failed") and condition.get("status", "True") == "True":
                raise BootstrapError(f"certificate signing request {name} {condition['type'].lower()}: "
                                     f"{condition.get('reason', '')} {condition.get('message', '')}".strip())
        if status.get("certificate"):
            log.info("certificate signing request %s approved and issued", name)
            return base64.b64decode(status["certificate"])
        if time.monotonic() >= until or stop.is_set():
            raise BootstrapError(f"certificate signing request {name} not issued within {timeout:.0f}s (is a "
                                 f"CSR approver running for {signer}?)")
        stop.wait(backoff.next())


def node_client_certificate(client: KubeClient, node_name: str, *, timeout: float,
                            stop: threading.Event | None = None) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) for ``system:node:<name>`` in ``system:nodes``."""
    key_pem, csr_pem = key_and_csr(f"system:node:{node_name}", ["system:nodes"])
    cert_pem = request_certificate(client, csr_pem, CLIENT_SIGNER, ["digital signature", "client auth"],
                                   timeout=timeout, stop=stop)
    return key_pem, cert_pem


def bootstrap(kubeconfig: str, bootstrap_kubeconfig: str, node_name: str, *, timeout: float = 300.0) -> bool:
    """Write the node's own credentials to ``kubeconfig`` when it needs them; True when it did."""
    reason = needs_bootstrap(kubeconfig)
    if reason is None:
        return False
    log.info("%s: joining as system:node:%s with the bootstrap kubeconfig %s", reason, node_name,
             bootstrap_kubeconfig)
    config = yaml.safe_load(Path(bootstrap_kubeconfig).read_text()) or {}
    cluster = _current_cluster(config, Path(bootstrap_kubeconfig).parent)
    client = KubeClient.from_kubeconfig(bootstrap_kubeconfig)
    try:
        key_pem, cert_pem = node_client_certificate(client, node_name, timeout=timeout)
    finally:
        client.close()
    write_node_kubeconfig(kubeconfig, cluster, key_pem, cert_pem)
    cert = certfacts.facts(cert_pem)
    log.info("node client certificate for system:node:%s valid until %s; written to %s", node_name,
             f"{cert.not_after:%Y-%m-%dT%H:%M:%SZ}", kubeconfig)
    return True


class CertificateRotation:
    """Renews a certificate at 80 % of its life: the node's client certificate (by default) or, with
    ``renew`` and ``certificate`` given, another (the kubelet API's serving pair).

    ``renew(stop)`` makes and writes the new certificate; ``on_renewed()`` is
    called after it is in place (the app reloads the client, or the serving
    context). One named thread; failures retry with back-off (at most 60 s
    apart), each logged.
    """

    def __init__(self, client: KubeClient, kubeconfig: str, node_name: str, *,
                 on_renewed: Callable[[], None], timeout: float = 300.0,
                 certificate: Callable[[], certfacts.CertificateFacts | None] | None = None,
                 renew: Callable[[threading.Event], bytes] | None = None, name: str = "cert-rotation") -> None:
        self._client = client
        self._kubeconfig = kubeconfig
        self._node = node_name
        self._on_renewed = on_renewed
        self._timeout = timeout
        self._certificate = certificate or (lambda: client_certificate(self._kubeconfig))
        self._renew = renew or self._renew_client
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.renewals = 0

    def ours(self) -> bool:
        """The kubeconfig names the PEM a bootstrap wrote (another's credentials are not rotated here)."""
        try:
            user = _current_user(yaml.safe_load(Path(self._kubeconfig).read_text()) or {})
        except (OSError, yaml.YAMLError):
            return False
        return user.get("client-certificate") == str(credentials_path(self._kubeconfig))

    def due(self) -> float | None:
        """Wall-clock time of the next renewal, or None when there is no certificate to renew."""
        cert = self._certificate()
        if cert is None:
            return None
        issued, expires = cert.not_before.timestamp(), cert.not_after.timestamp()
        return issued + RENEW_AT * (expires - issued)

    def start(self) -> None:
        if (self._renew == self._renew_client and not self.ours()) or self.due() is None:
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _renew_client(self, stop: threading.Event) -> bytes:
        key_pem, cert_pem = node_client_certificate(self._client, self._node, timeout=self._timeout, stop=stop)
        write_private(credentials_path(self._kubeconfig), key_pem + cert_pem)
        return cert_pem

    def _run(self) -> None:
        backoff = Backoff(1.0, 60.0, jitter=0.2)
        while not self._stop.is_set():
            due = self.due()
            if due is None or self._stop.wait(max(0.0, due - time.time())):
                return
            try:
                cert_pem = self._renew(self._stop)
                self.renewals += 1
                self._on_renewed()
                backoff.reset()
                log.info("%s: certificate renewed; valid until %s", self._name,
                         f"{certfacts.facts(cert_pem).not_after:%Y-%m-%dT%H:%M:%SZ}")
            except (ApiError, BootstrapError, OSError) as error:
                wait = backoff.next()
                log.warning("%s: renewing the certificate failed: %s; retrying in %.0fs", self._name, error, wait)
                self._stop.wait(wait)


def serving_certificate(client: KubeClient, node_name: str, addresses: Sequence[str], hostnames: Sequence[str],
                        directory: str, *, timeout: float = 30.0) -> tuple[str, str]:
    """A ``kubernetes.io/kubelet-serving`` certificate for the node's addresses: (cert file, key file).

    Written in ``directory`` (0600, atomic) for the kubelet API to serve; the
    cluster's CA then vouches for it to metrics-server and the API server.
    """
    key_pem, csr_pem = key_and_csr(f"system:node:{node_name}", ["system:nodes"], dns=hostnames, ips=addresses)
    cert_pem = request_certificate(client, csr_pem, SERVING_SIGNER,
                                   ["digital signature", "server auth"], timeout=timeout)
    cert_file, key_file = serving_paths(directory)
    write_private(key_file, key_pem)
    write_private(cert_file, cert_pem)
    return str(cert_file), str(key_file)


def serving_paths(directory: str) -> tuple[Path, Path]:
    return Path(directory) / "kubelet-serving-cluster.crt", Path(directory) / "kubelet-serving-cluster.key"


def serving_rotation(client: KubeClient, node_name: str, addresses: Sequence[str], hostnames: Sequence[str],
                     directory: str, *, on_renewed: Callable[[str, str], None]) -> CertificateRotation:
    """Renews the cluster-issued serving pair at 80 % of its life; ``on_renewed(cert_file, key_file)``
    is the kubelet API's reload hook (the app reloads the server's SSL context with it)."""
    cert_file, key_file = serving_paths(directory)

    def certificate() -> certfacts.CertificateFacts | None:
        try:
            return certfacts.facts(cert_file.read_bytes())
        except (OSError, ValueError):
            return None

    def renew(stop: threading.Event) -> bytes:
        serving_certificate(client, node_name, addresses, hostnames, directory)
        return cert_file.read_bytes()

    return CertificateRotation(client, "", node_name, on_renewed=lambda: on_renewed(str(cert_file), str(key_file)),
                               certificate=certificate, renew=renew, name="serving-cert-rotation")
