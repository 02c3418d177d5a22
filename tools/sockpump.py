"""One socket pump for the local test tools: kubelite's stream splice and the tests' TCP relay copy with it.

Copies ``source.recv`` to ``sink.sendall`` until the source ends or either side fails, then shuts both
down (so the pump of the other direction ends too) and calls ``on_end``. Anything with ``recv``,
``sendall`` and ``shutdown`` works (a buffered reader or a WebSocket wrapped to look like a socket).
"""

from __future__ import annotations

import socket
from collections.abc import Callable


def pump(source, sink, on_end: Callable[[], None] | None = None, size: int = 65536) -> int:
    """Copy until the end; returns the bytes copied."""
    copied = 0
    try:
        while True:
            data = source.recv(size)
            if not data:
                break
            sink.sendall(data)
            copied += len(data)
    except OSError:
        pass
    finally:
        for end in (sink, source):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if on_end is not None:
            on_end()
    return copied
