"""Who the client says it is, kept current: a fixed header, a token file re-read when it changes, an exec plugin.

Each source hands out the ``Authorization`` header value (and, for an exec
plugin, the client certificate it issued) and refreshes itself: a token file
(a bound service-account token is rewritten in place) when its stat changes,
an exec plugin before its ``expirationTimestamp``. Nothing here logs or puts a
credential in an error message. It knows nothing of kubeconfig layout or HTTP.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger("vkcmd.kube.credentials")

EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
EXEC_TIMEOUT = 60.0  # a plugin that hangs must not hold every request forever
REFRESH_BEFORE = 300.0  # re-run an exec plugin this long before its credential expires (client-go: 0, python: 5 min)
REFRESH_SHARE = 0.2  # ... or this share of the credential's life, when that is shorter
RETRY_AFTER = 10.0  # a failed refresh is tried again this much later, not at every request


class CredentialError(ValueError):
    """A credential that cannot be had (file unreadable, plugin failed); the message holds no secret."""


class Credentials:
    """A fixed ``Authorization`` value (a token from the kubeconfig, or basic auth)."""

    def __init__(self, authorization: str | None = None) -> None:
        self._authorization = authorization

    def authorization(self) -> str | None:
        return self._authorization

    def client_pair(self) -> tuple[bytes, bytes] | None:
        """(certificate PEM, key PEM) a plugin issued, or None; a new tuple when it changed."""
        return None

    def expire(self) -> None:
        """The server refused the credential (401): fetch a new one at the next request if the source can."""


class TokenFile(Credentials):
    """A bearer token read from ``path``, read again when the file changes (stat) and at least every minute
    (client-go's period: a rewrite within the same clock tick and size leaves the stat alike)."""

    REREAD = 60.0

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._stamp: tuple[int, int, int, int] | None = None
        self._lock = threading.Lock()
        self._failed = False
        self._read_at = 0.0
        self._read(initial=True)

    def authorization(self) -> str | None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp or time.monotonic() - self._read_at > self.REREAD:
            with self._lock:
                if stamp != self._stamp or time.monotonic() - self._read_at > self.REREAD:
                    self._read(initial=False)
        return self._authorization

    def expire(self) -> None:
        self._stamp = None

    def _read(self, *, initial: bool) -> None:
        try:
            st = os.stat(self.path)
            with open(self.path, encoding="utf-8") as handle:
                token = handle.read().strip()
            if not token:
                raise CredentialError(f"token file {self.path} is empty")
        except (OSError, UnicodeDecodeError, CredentialError) as error:
            reason = error if isinstance(error, CredentialError) else \
                f"token file {self.path} is not readable ({getattr(error, 'strerror', None) or type(error).__name__})"
            if initial:
                raise CredentialError(str(reason)) from None
            if not self._failed:  # keep the last token (client-go does the same); say so once
                log.warning("%s; the previous token is kept", reason)
                self._failed = True
            return
        self._failed = False
        self._read_at = time.monotonic()
        self._stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        self._authorization = f"Bearer {token}"


class ExecPlugin(Credentials):
    """A client.authentication.k8s.io ExecCredential plugin: run at start, run again before expiry."""

    def __init__(self, spec: Mapping[str, Any], *, base_dir: str, cluster: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None, clock=time.time) -> None:
        super().__init__()
        command = spec.get("command")
        if not isinstance(command, str) or not command:
            raise CredentialError("exec: expected a command")
        self.api_version = spec.get("apiVersion")
        if self.api_version not in EXEC_API_VERSIONS:
            raise CredentialError(f"exec: apiVersion {self.api_version!r} is not supported "
                                  f"(expected one of {', '.join(EXEC_API_VERSIONS)})")
        if spec.get("interactiveMode") == "Always":
            raise CredentialError("exec: interactiveMode Always needs a terminal; vkcmd runs without one")
        if os.sep in command and not os.path.isabs(command):  # client-go: a path, not a PATH lookup
            command = os.path.normpath(os.path.join(base_dir, command))
        args = spec.get("args") or []
        env_list = spec.get("env") or []
        if not isinstance(args, Sequence) or isinstance(args, str) or not all(isinstance(a, str) for a in args):
            raise CredentialError("exec: expected args to be a list of strings")
        if not isinstance(env_list, Sequence) or not all(isinstance(e, Mapping) and "name" in e for e in env_list):
            raise CredentialError("exec: expected env to be a list of {name, value}")
        self.argv = [command, *args]
        self.env = dict(os.environ if environ is None else environ)
        self.env.update({str(e["name"]): str(e.get("value", "")) for e in env_list})
        info: dict[str, Any] = {"apiVersion": self.api_version, "kind": "ExecCredential",
                                "spec": {"interactive": False}}
        if spec.get("provideClusterInfo") and cluster is not None:
            info["spec"]["cluster"] = _cluster_info(cluster)
        self.env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
        self.base_dir = base_dir or None
        self._clock = clock
        self._lock = threading.Lock()
        self._pair: tuple[bytes, bytes] | None = None
        self._refresh_at: float | None = None
        self._expiry: float | None = None
        self._failing = False
        self.runs = 0
        self._run()

    def authorization(self) -> str | None:
        if self._refresh_at is not None and self._clock() >= self._refresh_at:
            with self._lock:
                if self._refresh_at is not None and self._clock() >= self._refresh_at:
                    self._refresh()
        return self._authorization

    def _refresh(self) -> None:
        """Run the plugin again; while it fails, keep a credential that has not expired yet."""
        try:
            self._run()
        except CredentialError as error:
            now = self._clock()
            self._refresh_at = now + RETRY_AFTER
            if not self._failing:
                log.warning("%s; trying again in %.0f s", error, RETRY_AFTER)
                self._failing = True
            if self._expiry is None or now >= self._expiry:
                raise
            return
        self._failing = False

    def client_pair(self) -> tuple[bytes, bytes] | None:
        self.authorization()
        return self._pair

    def expire(self) -> None:
        self._refresh_at = self._clock()

    def _run(self) -> None:
        """Run the plugin and take its credential; raise CredentialError (no secret in it) when it fails."""
        name = os.path.basename(self.argv[0])
        self.runs += 1
        try:
            done = subprocess.run(self.argv, env=self.env, cwd=self.base_dir, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=EXEC_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise CredentialError(f"exec plugin {name}: no answer in {EXEC_TIMEOUT:.0f} s") from None
        except OSError as error:
            raise CredentialError(f"exec plugin {name}: cannot run {self.argv[0]} ({error.strerror})") from None
        if done.returncode != 0:
            last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1][:200]
            raise CredentialError(f"exec plugin {name} exited with status {done.returncode}"
                                  + (f": {last}" if last else ""))
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            raise CredentialError(f"exec plugin {name}: its output is not JSON") from None
        if not isinstance(answer, dict) or answer.get("kind") != "ExecCredential" \
                or answer.get("apiVersion") != self.api_version or not isinstance(answer.get("status"), dict):
            raise CredentialError(f"exec plugin {name}: expected an ExecCredential of {self.api_version} "
                                  "with a status")
        status = answer["status"]
        token = status.get("token")
        cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
        if not token and not (cert and key):
            raise CredentialError(f"exec plugin {name}: expected status.token or "
                                  "status.clientCertificateData and clientKeyData")
        expiry = None
        if status.get("expirationTimestamp"):
            try:
                expiry = parse_rfc3339(status["expirationTimestamp"])
            except ValueError:
                raise CredentialError(f"exec plugin {name}: expirationTimestamp is not RFC 3339") from None
        now = self._clock()
        self._authorization = f"Bearer {token}" if token else None
        pair = (cert.encode(), key.encode()) if cert and key else None
        if pair != self._pair:
            self._pair = pair
        self._expiry = expiry
        self._refresh_at = None if expiry is None else \
            max(now + 1.0, expiry - min(REFRESH_BEFORE, max(0.0, expiry - now) * REFRESH_SHARE))


def _cluster_info(cluster: Mapping[str, Any]) -> dict[str, Any]:
    """The ExecCredential's spec.cluster (client-go's field names) from a kubeconfig cluster."""
    info = {"server": cluster.get("server"), "tls-server-name": cluster.get("tls-server-name"),
            "insecure-skip-tls-verify": cluster.get("insecure-skip-tls-verify"),
            "certificate-authority-data": cluster.get("certificate-authority-data"),
            "proxy-url": cluster.get("proxy-url")}
    for extension in cluster.get("extensions") or []:
        if isinstance(extension, Mapping) and extension.get("name") == "client.authentication.k8s.io/exec":
            info["config"] = extension.get("extension")
    return {k: v for k, v in info.items() if v is not None}


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (``Z`` or an offset; fractions allowed)."""
    value = datetime.datetime.fromisoformat(str(text).strip().replace("z", "Z").replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.timestamp()
