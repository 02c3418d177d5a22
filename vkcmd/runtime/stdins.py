"""The write ends of containers' stdin (``stdin: true``), kept by vkcmd as the CRI keeps a container's stdin.

``spawn`` registers the write end of a run's stdin pipe (or the controller of its
pty) here; ``kubectl attach -i`` writes through :meth:`StdinTable.open`. With
``stdinOnce`` the first attach that ends closes it (the process reads EOF). The
ends live in this process only: after a restart of vkcmd a recovered run's
stdin is at EOF and an attach gets no stdin. Knows nothing of HTTP.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
import threading
from collections.abc import Callable

from vkcmd.runtime.process_stat import read_stat


class Stdin:
    """One run's stdin: writes that never block the caller for good (``gone()`` is polled while the pipe is full)."""

    def __init__(self, fd: int, pid: int, once: bool, tty: bool) -> None:
        self.fd, self.pid, self.once, self.tty = fd, pid, once, tty
        self._lock = threading.Lock()
        self.closed = False
        os.set_blocking(fd, False)

    def write(self, data: bytes, gone: Callable[[], bool] = lambda: False) -> bool:
        """Write all of ``data``; False when the stdin is closed or the reader left (or ``gone()`` says stop)."""
        view = memoryview(data)
        with self._lock:
            while view and not self.closed:
                try:
                    view = view[os.write(self.fd, view):]
                except BlockingIOError:
                    if gone():
                        return False
                    select.select([], [self.fd], [], 0.5)
                except OSError:  # EPIPE (the process closed its stdin or ended), EIO (pty)
                    return False
            return not view

    def resize(self, width: int, height: int) -> None:
        """The terminal's size (``tty: true``), as ``kubectl attach -t`` reports it."""
        if self.tty and width > 0 and height > 0 and not self.closed:
            fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                os.close(self.fd)


class StdinTable:
    """Run id -> :class:`Stdin`; an entry goes when it is closed or its run's leader is gone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_run: dict[str, Stdin] = {}

    def put(self, run_id: str, fd: int, pid: int, *, once: bool, tty: bool) -> None:
        self.sweep()
        with self._lock:
            self._by_run[run_id] = Stdin(fd, pid, once, tty)

    def get(self, run_id: str) -> Stdin | None:
        """The run's open stdin, or None (no ``stdin: true``, closed by stdinOnce, or vkcmd restarted)."""
        with self._lock:
            stdin = self._by_run.get(run_id)
        return stdin if stdin is not None and not stdin.closed else None

    def sweep(self) -> None:
        """Close the ends of runs whose leader has ended (called at each spawn: nothing waits on them)."""
        with self._lock:
            ended = [run for run, stdin in self._by_run.items() if stdin.closed or not _alive(stdin.pid)]
            dropped = [self._by_run.pop(run) for run in ended]
        for stdin in dropped:
            stdin.close()

    def close_all(self) -> None:
        with self._lock:
            dropped, self._by_run = list(self._by_run.values()), {}
        for stdin in dropped:
            stdin.close()


def _alive(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat.state != "Z"
