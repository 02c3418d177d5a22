"""One network check as the kubelet's prober does it: httpGet, tcpSocket or grpc, with a timeout.

Every check returns a ``ProbeResult`` (never raises); the output says why it failed,
in the words the kubelet's Unhealthy events use.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from vkcmd.probing.grpchealth import grpc_check
from vkcmd.probing.httpget import http_check
from vkcmd.runtime.probes import ProbeResult


def resolve_port(port: Any, ports: Sequence[dict[str, Any]]) -> int:
    """A probe's port: a number, or the name of one of the container's ports (ValueError otherwise)."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        number = int(port)
    else:
        named = next((p for p in ports if p.get("name") == port), None)
        if named is None:
            raise ValueError(f"unknown port name {port!r}")
        number = int(named.get("containerPort") or 0)
    if not 0 < number < 65536:
        raise ValueError(f"invalid port number: {number}")
    return number


def network_check(action: dict[str, Any], kind: str, pod_ip: str, ports: Sequence[dict[str, Any]],
                  timeout: float) -> ProbeResult:
    """Run the ``kind`` action (httpGet, tcpSocket, grpc) of a probe or hook."""
    try:
        if kind == "grpc":
            port = resolve_port(action.get("port"), ())
            return grpc_check(pod_ip, port, action.get("service") or "", timeout)
        port = resolve_port(action.get("port"), ports)
        host = action.get("host") or pod_ip
        if kind == "httpGet":
            return http_check(action, host, port, timeout)
        return tcp_check(host, port, timeout)
    except ValueError as error:
        return ProbeResult(False, str(error))


def tcp_check(host: str, port: int, timeout: float) -> ProbeResult:
    """Success when a TCP connection opens within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ProbeResult(True, "")
    except socket.timeout:
        return ProbeResult(False, f"dial tcp {_join(host, port)}: i/o timeout", timed_out=True)
    except OSError as error:
        return ProbeResult(False, f"dial tcp {_join(host, port)}: connect: {error.strerror or error}")


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
