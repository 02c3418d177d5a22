"""``pods/log``: find the pod's kubelet and open ``/containerLogs`` on it, as the apiserver does.

Owns the container-name rules (default to the only container; 400 naming the
choices otherwise), the node address lookup (InternalIP, daemon endpoint port)
and the TLS client connection with the apiserver's kubelet-client identity
(the kubelet's serving cert is not verified, like ``--kubelet-insecure-tls``).
Returns an open upstream response; streaming it to the caller is the server's job.
"""

from __future__ import annotations

import http.client
import json
import ssl
from urllib.parse import quote, urlencode

from . import errors

#: Query parameters of PodLogOptions forwarded to the kubelet.
FORWARDED = ("follow", "previous", "sinceSeconds", "sinceTime", "timestamps", "tailLines", "limitBytes")
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            500: "InternalError", 503: "ServiceUnavailable"}


def kubelet_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


def pick_container(pod: dict, requested: str | None) -> str:
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    containers = [c.get("name") for c in spec.get("containers") or []]
    inits = [c.get("name") for c in spec.get("initContainers") or []]
    if requested:
        if requested not in containers and requested not in inits:
            raise errors.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    if len(containers) == 1:
        return containers[0]
    msg = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
    if inits:
        msg += f" or one of the init containers: [{' '.join(inits)}]"
    raise errors.bad_request(msg)


def kubelet_address(node: dict) -> tuple[str, int]:
    status = node.get("status") or {}
    addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = addrs.get("InternalIP") or addrs.get("ExternalIP") or addrs.get("Hostname")
    if not host:
        raise errors.bad_request(f"no preferred addresses found; known addresses: {status.get('addresses') or []}")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250
    return host, int(port)


def open_logs(pod: dict, node: dict, container: str, query: dict, ctx: ssl.SSLContext,
              timeout: float = 30.0) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
    """Connect and GET the container's log; non-200 answers become ApiErrors with the kubelet's status."""
    host, port = kubelet_address(node)
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    params = {k: query[k] for k in FORWARDED if k in query}
    path = f"/containerLogs/{quote(ns)}/{quote(name)}/{quote(container)}"
    if params:
        path += "?" + urlencode(params)
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
    except OSError as e:
        conn.close()
        raise errors.ApiError(500, "InternalError", f'Get "https://{host}:{port}{path}": {e}') from None
    if resp.status != 200:
        body = resp.read().decode(errors="replace").strip()
        conn.close()
        reason, message = _REASONS.get(resp.status, "InternalError"), body or resp.reason
        try:
            status = json.loads(body)
            if isinstance(status, dict) and status.get("kind") == "Status":
                reason, message = status.get("reason") or reason, status.get("message") or message
        except ValueError:
            pass
        raise errors.ApiError(resp.status, reason, message)
    # a follow stream may stay silent for long: no read timeout once the stream is open
    if conn.sock is not None:
        conn.sock.settimeout(None)
    return conn, resp
