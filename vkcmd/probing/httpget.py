"""httpGet probes as the kubelet does them: 2xx and 3xx succeed, same-host redirects followed.

A redirect to another host is not followed and counts as success with a warning (the
kubelet's "Probe terminated redirects"); at most 10 redirects. HTTPS does not verify
the certificate, as the kubelet's prober does not.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.parse
from typing import Any

from vkcmd.runtime.probes import ProbeResult

MAX_REDIRECTS = 10
BODY_LIMIT = 10 * 1024
USER_AGENT = "kube-probe/1.33"


def http_check(action: dict[str, Any], host: str, port: int, timeout: float) -> ProbeResult:
    scheme = str(action.get("scheme") or "HTTP").lower()
    if scheme not in ("http", "https"):
        return ProbeResult(False, f"unsupported scheme {action.get('scheme')!r}")
    path = str(action.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    for header in action.get("httpHeaders") or []:
        name = str(header.get("name") or "")
        if name:
            headers[name if name.lower() != "host" else "Host"] = str(header.get("value") or "")
    url = f"{scheme}://{_netloc(host, port)}{path}"
    deadline = time.monotonic() + timeout  # one budget for the request and its redirects
    for _ in range(MAX_REDIRECTS + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return ProbeResult(False, f'Get "{url}": context deadline exceeded', timed_out=True)
        try:
            status, location, body = _get(url, headers, remaining)
        except socket.timeout:
            return ProbeResult(False, f'Get "{url}": context deadline exceeded', timed_out=True)
        except (OSError, http.client.HTTPException) as error:
            return ProbeResult(False, f'Get "{url}": {_why(error)}')
        if status in (301, 302, 303, 307, 308) and location:
            target = urllib.parse.urljoin(url, location)
            if urllib.parse.urlsplit(target).hostname != urllib.parse.urlsplit(url).hostname:
                return ProbeResult(True, f"Probe terminated redirects, Response body: {body}",
                                   warning=f"Probe terminated redirects, Response body: {body[:200]}")
            url = target
            continue
        if 200 <= status < 400:
            return ProbeResult(True, body)
        return ProbeResult(False, f"HTTP probe failed with statuscode: {status}")
    return ProbeResult(False, f'Get "{url}": stopped after {MAX_REDIRECTS} redirects')


def _get(url: str, headers: dict[str, str], timeout: float) -> tuple[int, str, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port or 443, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        body = response.read(BODY_LIMIT).decode("utf-8", "replace")
        return response.status, response.getheader("Location") or "", body
    finally:
        connection.close()


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _why(error: Exception) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "dial tcp: connect: connection refused"
    return str(error) or type(error).__name__
