"""``pods/exec``, ``pods/attach`` and ``pods/portforward``: dial the pod's kubelet and splice, as the apiserver does.

The caller is already authorized (``create`` on ``pods/exec``). The request is
rewritten to the kubelet's path and parameters (``stdin`` -> ``input``, ...),
sent with the apiserver's kubelet-client identity and the caller's Upgrade and
``X-Stream-Protocol-Version`` headers; a 101 is relayed and then bytes are
copied both ways until one side closes (SPDY passes through). A WebSocket
(``v5.channel.k8s.io``, kubectl's default for exec and attach) is translated to
SPDY (``wsbridge``), and so is kubectl's tunnelling WebSocket port-forward
(``wstunnel``). ``UPGRADES`` counts which transport each request took.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections import Counter
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from tools.sockpump import pump

from . import errors
from .logproxy import kubelet_address, pick_container

#: (kubelet route, upgrade) -> count: ("portForward", "websocket") is kubectl's WebSocket port-forward.
UPGRADES: Counter[tuple[str, str]] = Counter()
#: kube-apiserver's ExtendWebSocketsToKubelet: pass a WebSocket request straight to the kubelet (tests set it).
PASS_WEBSOCKETS_TO_KUBELET = False
_WEBSOCKET_HEADERS = ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol")
_PARAMS = {"stdin": "input", "stdout": "output", "stderr": "error", "tty": "tty", "command": "command"}


def kubelet_exec_path(pod: dict, raw_query: str, kind: str = "exec") -> str:
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    container = pick_container(pod, next((v for k, v in pairs if k == "container"), None))
    params = [(_PARAMS[k], "1" if k != "command" and v in ("true", "1") else v) for k, v in pairs
              if k in _PARAMS and (k == "command" or v in ("true", "1"))]
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    return f"/{kind}/{quote(ns)}/{quote(name)}/{quote(container)}?{urlencode(params)}"


def _read_head(sock: ssl.SSLSocket) -> tuple[bytes, bytes]:
    """The response head (through the blank line) and any bytes already read after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("the kubelet closed the connection before answering")
        data += chunk
        if len(data) > 1 << 20:
            raise OSError("the kubelet's answer head is over 1 MiB")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def kubelet_path(subresource: str, pod: dict, raw_query: str) -> str:
    """The kubelet's path for ``pods/<subresource>``."""
    if subresource == "portforward":
        return f"/portForward/{quote(pod['metadata']['namespace'])}/{quote(pod['metadata']['name'])}"
    return kubelet_exec_path(pod, raw_query, subresource)


def splice(handler, path: str, node: dict, ctx: ssl.SSLContext) -> None:
    """Answer ``handler``'s upgrade request by the kubelet's, then copy both ways until either side ends."""
    upgrade = handler.headers.get("Upgrade") or ""
    UPGRADES[(path.split("/")[1], upgrade.lower())] += 1  # which transport each kubectl call took
    if upgrade.lower() == "websocket" and path.startswith(("/exec/", "/attach/")):
        from .wsbridge import bridge  # wsproto: a test dependency, like the rest of the local control plane

        return bridge(handler, path, node, ctx, urlsplit(handler.path).query)
    websocket_through = upgrade.lower() == "websocket" and PASS_WEBSOCKETS_TO_KUBELET
    if upgrade.lower() == "websocket" and path.startswith("/portForward/") and not websocket_through:
        from .wstunnel import tunnel

        return tunnel(handler, path, node, ctx)
    if upgrade.lower() != "spdy/3.1" and not websocket_through:
        raise errors.bad_request(f"unable to upgrade connection: protocol {upgrade or 'none'} is not served here")
    host, port = kubelet_address(node)
    lines = [f"{'GET' if websocket_through else 'POST'} {path} HTTP/1.1", f"Host: {host}:{port}",
             "Connection: Upgrade", f"Upgrade: {upgrade}", "Content-Length: 0"]
    for name in ("X-Stream-Protocol-Version",) + (_WEBSOCKET_HEADERS if websocket_through else ()):
        lines += [f"{name}: {v}" for v in handler.headers.get_all(name) or []]
    try:
        upstream = ctx.wrap_socket(socket.create_connection((host, port), timeout=30), server_hostname=host)
        upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head, rest = _read_head(upstream)
    except OSError as error:
        raise errors.ApiError(500, "InternalError", f"error dialing backend: {error}") from None
    status = int(head.split(b" ", 2)[1])
    if status != 101:
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        try:
            while len(rest) < min(length, 1 << 16):
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                rest += chunk
        except OSError:
            pass
        body = rest.decode(errors="replace").strip()
        upstream.close()
        raise errors.ApiError(status, "BadRequest" if status < 500 else "InternalError", body or "upgrade failed")
    upstream.settimeout(None)
    client = handler.connection
    client.settimeout(None)
    handler.wfile.flush()
    client.sendall(head)
    if rest:
        client.sendall(rest)
    back = threading.Thread(target=pump, args=(upstream, client), name="kubelite-exec-down", daemon=True)
    back.start()
    pump(_Reader(handler.rfile, client), upstream)
    back.join(10)
    upstream.close()
    handler.close_connection = True


class _Reader:
    """The client side read through the handler's buffered reader (bytes it already holds come first)."""

    def __init__(self, rfile, sock) -> None:
        self._rfile = rfile
        self._sock = sock

    def recv(self, size: int) -> bytes:
        return self._rfile.read1(size)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)
