"""Where the cluster is and how to reach it: a kubeconfig's context, or the in-cluster service account.

Resolves what ``kubernetes.config`` resolves - server, CA (file or data),
client certificate and key (file or data), token / tokenFile / exec plugin /
basic auth, insecure-skip-tls-verify, tls-server-name, proxy-url or the proxy
environment - into one :class:`ClusterAccess`. Material given as data stays in
memory (a memfd while a path is needed), never in a file another user could
read. Problems are :class:`KubeconfigError`: one line, never a secret. It
knows nothing of API requests.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from vkcmd.kube.credentials import CredentialError, Credentials, ExecPlugin, TokenFile

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeconfigError(ValueError):
    """A kubeconfig (or in-cluster setup) vkcmd cannot connect with; the message names what and where."""


@dataclass(eq=False)
class ClusterAccess:
    """One cluster endpoint and the identity to present there."""

    server: str  # scheme://host[:port], no trailing slash
    source: str  # the kubeconfig's path, or "in-cluster", for messages
    ca_pem: bytes | None = None  # None: the system's trust store
    ca_path: str | None = None  # the CA as the kubeconfig named it, when it was a file
    verify: bool = True
    tls_server_name: str | None = None
    proxy: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    credentials: Credentials = field(default_factory=Credentials)
    _ca_fd: int | None = None
    _pair: tuple[bytes, bytes | None] | None = None

    def client_pair(self) -> tuple[bytes, bytes | None] | None:
        """The client certificate to present: an exec plugin's current one, else the kubeconfig's.

        The same tuple while it is unchanged (the client makes a new pool when it is not)."""
        issued = self.credentials.client_pair()
        if issued is not None or self.cert_pem is None:
            return issued
        if self._pair is None or self._pair != (self.cert_pem, self.key_pem):
            self._pair = (self.cert_pem, self.key_pem)
        return self._pair

    def ca_file(self) -> str | None:
        """A path to the CA for readers that want a file (the kubelet API checks client certificates with it)."""
        if self.ca_path or self.ca_pem is None:
            return self.ca_path
        if self._ca_fd is None:
            self._ca_fd = _memfd("vkcmd-cluster-ca", self.ca_pem)
        return f"/proc/self/fd/{self._ca_fd}"

    def ssl_context(self, pair: tuple[bytes, bytes | None] | None) -> ssl.SSLContext:
        """The client TLS context: the CA to trust, the certificate to present; raises KubeconfigError."""
        from urllib3.util.ssl_ import create_urllib3_context

        context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED if self.verify else ssl.CERT_NONE)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            if self.ca_pem is not None:
                context.load_verify_locations(cadata=self.ca_pem.decode("ascii", "replace"))
            elif self.verify:
                context.load_default_certs()
        except (ssl.SSLError, ValueError):
            raise KubeconfigError(f"kubeconfig {self.source}: the certificate authority is not PEM certificates") \
                from None
        if pair is not None:
            _load_pair(context, pair, self.source)
        return context

    def close(self) -> None:
        if self._ca_fd is not None:
            os.close(self._ca_fd)
            self._ca_fd = None


def load(path: str, context: str | None = None, environ: Mapping[str, str] | None = None) -> ClusterAccess:
    """The access ``path``'s current context (or ``context``) describes; raises KubeconfigError."""
    environ = os.environ if environ is None else environ
    path = os.path.abspath(os.path.expanduser(path))
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as error:
        raise KubeconfigError(f"kubeconfig {path}: cannot read it ({error.strerror})") from None
    except (UnicodeDecodeError, yaml.YAMLError):
        raise KubeconfigError(f"kubeconfig {path}: not a YAML document") from None
    if not isinstance(document, dict):
        raise KubeconfigError(f"kubeconfig {path}: not a kubeconfig (expected a mapping with clusters, "
                              "contexts and users)")
    return resolve(document, path, context, environ)


def resolve(document: Mapping[str, Any], path: str, context: str | None = None,
            environ: Mapping[str, str] | None = None) -> ClusterAccess:
    """The access a parsed kubeconfig describes; relative files are relative to ``path``'s directory."""
    environ = os.environ if environ is None else environ
    base = os.path.dirname(path)

    def fail(message: str) -> KubeconfigError:
        return KubeconfigError(f"kubeconfig {path}: {message}")

    name = context or document.get("current-context")
    if not name:
        raise fail("no current-context")
    chosen = _named(document, "contexts", name, fail).get("context") or {}
    if not isinstance(chosen, Mapping) or not chosen.get("cluster"):
        raise fail(f"context {name!r} names no cluster")
    cluster = _named(document, "clusters", chosen["cluster"], fail).get("cluster") or {}
    user: Mapping[str, Any] = {}
    if chosen.get("user") and document.get("users"):
        found = _named(document, "users", chosen["user"], fail, required=False)
        user = (found or {}).get("user") or {}
    if not isinstance(cluster, Mapping) or not isinstance(user, Mapping):
        raise fail(f"context {name!r}: expected its cluster and user to be mappings")
    server = cluster.get("server")
    if not isinstance(server, str) or not server.strip():
        raise fail(f"cluster {chosen['cluster']!r} has no server")
    server = server.strip().rstrip("/")
    parts = urlsplit(server)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise fail(f"cluster {chosen['cluster']!r}: server {server!r} is not an http(s) URL")
    access = ClusterAccess(server=server, source=path)
    access.verify = not bool(cluster.get("insecure-skip-tls-verify"))
    access.tls_server_name = cluster.get("tls-server-name") or None
    access.proxy = _proxy(cluster.get("proxy-url"), server, environ, fail)
    for key in ("as", "as-groups", "as-uid", "as-user-extra"):
        if user.get(key):
            raise fail(f"user {chosen.get('user')!r}: impersonation ({key}) is not supported")
    if user.get("auth-provider"):
        provider = user["auth-provider"].get("name") if isinstance(user["auth-provider"], Mapping) else None
        raise fail(f"user {chosen.get('user')!r}: auth-provider {provider!r} is not supported (kubectl dropped "
                   "auth-provider plugins in 1.26); use an exec credential plugin or a token")
    if parts.scheme == "https":
        access.ca_pem = _material(cluster, "certificate-authority", base, fail)
        if access.ca_pem is not None and not cluster.get("certificate-authority-data"):
            access.ca_path = os.path.normpath(os.path.join(base, cluster["certificate-authority"]))
        access.cert_pem = _material(user, "client-certificate", base, fail)
        access.key_pem = _material(user, "client-key", base, fail)
    try:
        access.credentials = _credentials(user, base, cluster, environ)
    except CredentialError as error:
        raise fail(f"user {chosen.get('user')!r}: {error}") from None
    if parts.scheme == "https":
        access.ssl_context(access.client_pair())  # every TLS problem is reported now, at start-up
    return access


def in_cluster(environ: Mapping[str, str] | None = None, directory: str = SERVICE_ACCOUNT_DIR) -> ClusterAccess:
    """The pod's service account: KUBERNETES_SERVICE_HOST/PORT, its token (re-read as it rotates), ca.crt."""
    environ = os.environ if environ is None else environ
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeconfigError("in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set")
    host = f"[{host}]" if ":" in host or "%" in host else host
    ca_path = os.path.join(directory, "ca.crt")
    try:
        with open(ca_path, "rb") as handle:
            ca_pem = handle.read()
    except OSError as error:
        raise KubeconfigError(f"in-cluster: cannot read {ca_path} ({error.strerror})") from None
    if not ca_pem.strip():
        raise KubeconfigError(f"in-cluster: {ca_path} is empty")
    try:
        token = TokenFile(os.path.join(directory, "token"))
    except CredentialError as error:
        raise KubeconfigError(f"in-cluster: {error}") from None
    server = f"https://{host}:{port}"
    access = ClusterAccess(server=server, source="in-cluster", ca_pem=ca_pem, ca_path=ca_path, credentials=token,
                           proxy=_proxy(None, server, environ, KubeconfigError))
    access.ssl_context(None)
    return access


# --- pieces ----------------------------------------------------------------------------------

def _named(document: Mapping[str, Any], kind: str, name: str, fail, *, required: bool = True) -> dict[str, Any]:
    entries = document.get(kind) or []
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise fail(f"expected {kind} to be a list of named entries")
    found = [e for e in entries if e.get("name") == name]  # of two with one name the first wins, as in a merge
    if not found:
        if not required:
            return {}
        raise fail(f"no entry named {name!r} in {kind}")
    return dict(found[0])


def _material(section: Mapping[str, Any], key: str, base: str, fail) -> bytes | None:
    """``key``-data (base64; preferred, as by kubectl) or the file ``key`` names, as bytes; None when neither."""
    data = section.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError, TypeError):
            raise fail(f"{key}-data is not base64") from None
    name = section.get(key)
    if not name:
        return None
    file = os.path.normpath(os.path.join(base, str(name)))
    try:
        with open(file, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise fail(f"{key} {file}: cannot read it ({error.strerror})") from None


def _credentials(user: Mapping[str, Any], base: str, cluster: Mapping[str, Any],
                 environ: Mapping[str, str]) -> Credentials:
    """The python client's order: token (data before tokenFile), exec plugin, username/password."""
    if user.get("token"):
        return Credentials(f"Bearer {str(user['token']).strip()}")
    if user.get("tokenFile"):
        return TokenFile(os.path.normpath(os.path.join(base, str(user["tokenFile"]))))
    if user.get("exec"):
        if not isinstance(user["exec"], Mapping):
            raise CredentialError("exec: expected a mapping")
        return ExecPlugin(user["exec"], base_dir=base, cluster=cluster, environ=environ)
    if user.get("username") and user.get("password"):
        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        return Credentials(f"Basic {basic}")
    return Credentials()


def _proxy(proxy_url: Any, server: str, environ: Mapping[str, str], fail) -> str | None:
    """The cluster's proxy-url; else the environment's proxy for the server's scheme unless NO_PROXY matches."""
    if proxy_url:
        proxy = str(proxy_url)
    else:
        scheme = urlsplit(server).scheme
        proxy = _env(environ, f"{scheme}_proxy") or _env(environ, "all_proxy")
        if not proxy or _bypass(server, _env(environ, "no_proxy") or ""):
            return None
    if urlsplit(proxy).scheme not in ("http", "https"):
        raise fail(f"proxy {urlsplit(proxy).scheme or proxy!r}: only http and https proxies are supported")
    return proxy


def _env(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(name) or environ.get(name.upper()) or None


def _bypass(url: str, no_proxy: str) -> bool:
    """NO_PROXY matching as the python client does it: *, exact or domain-suffix host, host:port, CIDR."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    netloc = parts.netloc.lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
        entry = entry.lstrip(".")
        if host == entry or host.endswith("." + entry) or netloc == entry or netloc.endswith("." + entry):
            return True
    return False


def _memfd(name: str, data: bytes) -> int:
    """An anonymous in-memory file holding ``data`` (readable as /proc/self/fd/N by this process only)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd


def _load_pair(context: ssl.SSLContext, pair: tuple[bytes, bytes | None], source: str) -> None:
    """Load a client certificate and key given as bytes; they pass through memfds closed right after."""
    cert_pem, key_pem = pair
    fds = [_memfd("vkcmd-client-cert", cert_pem)]
    try:
        if key_pem is not None:
            fds.append(_memfd("vkcmd-client-key", key_pem))
        paths = [f"/proc/self/fd/{fd}" for fd in fds]
        context.load_cert_chain(paths[0], paths[1] if len(paths) > 1 else None)
    except (ssl.SSLError, ValueError):
        raise KubeconfigError(f"kubeconfig {source}: the client certificate and key are not a PEM pair that "
                              "belongs together") from None
    finally:
        for fd in fds:
            os.close(fd)
