"""gRPC probes: the standard ``grpc.health.v1.Health/Check`` over grpcio, plaintext, as the kubelet.

The request and response are two-field protobuf messages, encoded here by hand so
that no protobuf runtime or generated stubs are needed. grpcio is imported at the first gRPC probe.
"""

from __future__ import annotations

from vkcmd.runtime.probes import ProbeResult

METHOD = "/grpc.health.v1.Health/Check"
STATUSES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
USER_AGENT = "kube-probe/1.33"


def grpc_check(host: str, port: int, service: str, timeout: float) -> ProbeResult:
    import grpc  # imported at the first gRPC probe: grpcio is ~14 MB of RSS a node without one never needs

    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    channel = grpc.insecure_channel(target, options=[("grpc.primary_user_agent", USER_AGENT)])
    try:
        check = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        reply = check(encode_request(service), timeout=timeout)
    except grpc.RpcError as error:
        code = error.code() if hasattr(error, "code") else None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ProbeResult(False, f"timeout: health rpc did not complete within {timeout:g}s", timed_out=True)
        detail = error.details() if hasattr(error, "details") else str(error)
        return ProbeResult(False, f"failed to connect service {target!r} within {timeout:g}s: {detail}"
                           if code == grpc.StatusCode.UNAVAILABLE else f"health rpc failed: {code}: {detail}")
    finally:
        channel.close()
    status = decode_status(reply)
    if status == 1:
        return ProbeResult(True, "")
    return ProbeResult(False, f"service unhealthy (responded with {STATUSES.get(status, status)!s})")


def encode_request(service: str) -> bytes:
    """HealthCheckRequest{service = 1 (string)}."""
    data = service.encode()
    return (b"\x0a" + _varint(len(data)) + data) if data else b""


def decode_status(reply: bytes) -> int:
    """HealthCheckResponse.status (field 1, varint); 0 (UNKNOWN) when absent or unreadable."""
    index = 0
    while index < len(reply):
        key, index = _read_varint(reply, index)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, index = _read_varint(reply, index)
            if field == 1:
                return value
        elif wire == 2:
            length, index = _read_varint(reply, index)
            index += length
        else:
            return 0
    return 0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, index: int) -> tuple[int, int]:
    value = shift = 0
    while index < len(data):
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, index
    return value, index
