"""How the node ends its connections to a pod's ports, shared by both port-forward protocols."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios

_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST and drops what is queued


def shut(sock: socket.socket) -> None:
    """Both directions down; the pod reads EOF, the copying thread's recv returns."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def abort_on_close(sock: socket.socket) -> None:
    """After ``shut``: make the coming close() reset the connection if the pod has acknowledged every byte
    sent to it. Used when the client left first: a plain close with nothing unread sends no RST, and a pod
    still sending to the half-closed peer would stall, not fail. Bytes still owed to the pod keep a plain
    close."""
    try:
        unacknowledged = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        if unacknowledged <= 1:  # the FIN that shut() queued takes one sequence number; it is last
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    except OSError:
        pass
