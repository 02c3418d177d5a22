"""A gRPC health server for tests (run by a pod): grpc.health.v1.Health/Check answers from argv.

usage: python grpc_health_server.py PORT SERVICE=STATUS...  (STATUS 1 = SERVING, 2 = NOT_SERVING)
"""

import sys
import threading
from concurrent import futures

import grpc

sys.path.insert(0, __file__.rsplit("/", 3)[0])
from vkcmd.probing.grpchealth import _read_varint, _varint  # noqa: E402


def serve(port, statuses):
    def check(request, context):
        service = b""
        if request[:1] == b"\x0a":
            length, index = _read_varint(request, 1)
            service = request[index:index + length]
        status = statuses.get(service.decode())
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return b"\x08" + _varint(status)

    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


if __name__ == "__main__":
    pairs = dict(arg.split("=", 1) for arg in sys.argv[2:])
    server, bound = serve(int(sys.argv[1]), {k: int(v) for k, v in pairs.items()})
    print(f"serving on {bound}", flush=True)
    threading.Event().wait()
