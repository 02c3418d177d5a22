"""Network probes and hooks: httpGet, tcpSocket and gRPC health checks against a pod's address.

The same layer as the runtime (which runs exec probes); it knows probe specs as
plain dicts and sockets, nothing of records, processes or the API server.
"""

from vkcmd.probing.network import network_check, resolve_port

__all__ = ["network_check", "resolve_port"]
