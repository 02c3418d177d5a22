"""Learning of exits as they happen: one thread, one epoll over one pidfd per run leader.

No polling, no ``waitpid(-1)``, and vkcmd itself is no child subreaper (each run's leader is): a
pidfd becomes readable when its process ends, whoever its parent is, so the same path serves runs spawned by this vkcmd (reaped here, by pid) and
runs adopted after a restart (reaped by init; their status comes from the monitor's exit file).
Also here: the exit report and the one function that turns a wait status into an exit code.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

COMPLETED = "Completed"
ERROR = "Error"
OOM_KILLED = "OOMKilled"
#: The run's exit could not be learned (its monitor was killed while vkcmd was down, or its state
#: was lost); reported with exit code 137, as the kubelet does for a container it cannot find.
STATUS_UNKNOWN = "ContainerStatusUnknown"
#: The run's record names no process (a damaged or foreign record); exit code 128, as containerd.
START_ERROR = "StartError"
REASONS = frozenset({COMPLETED, ERROR, OOM_KILLED, STATUS_UNKNOWN, START_ERROR})


@dataclass(frozen=True)
class ExitReport:
    """How a run ended. ``exit_code`` follows the shell: a command killed by signal n gives 128+n,
    and then ``signal`` is n (inferred from that convention when the command's own status is all
    that is known). ``reason``: one of REASONS. Times are wall clock."""
    key: str
    run_id: str
    exit_code: int
    signal: int | None
    finished_at: float
    reason: str
    started_at: float = 0.0
    message: str = ""


def signal_of(exit_code: int) -> int | None:
    return exit_code - 128 if 128 < exit_code <= 128 + signal.NSIG - 1 else None


def reason_of(exit_code: int) -> str:
    return COMPLETED if exit_code == 0 else ERROR


def exit_code_of(wait_status: int) -> int:
    """A wait status as a shell would report it: exit status, or 128+n for signal n."""
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code


def reap(pid: int) -> tuple[int | None, float]:
    """Reap ``pid`` if it is an ended child of this process: (wait status, CPU seconds of it and
    all it reaped). (None, 0.0) when it is not our child (adopted after a restart) or was reaped
    elsewhere. Never blocks: call it once the pidfd said the process ended."""
    try:
        got, status, ru = os.wait4(pid, os.WNOHANG)
    except ChildProcessError:
        return None, 0.0
    if got == 0:
        return None, 0.0
    return status, ru.ru_utime + ru.ru_stime


class Reaper:
    """Calls ``on_exit(pid)`` from its thread when a watched process ends (it must be quick)."""

    def __init__(self, on_exit: Callable[[int], None], name: str = "vkcmd-runtime-reaper"):
        self._on_exit = on_exit
        self._name = name
        self._epoll: select.epoll | None = None
        self._wake = -1
        self._fds: dict[int, int] = {}      # pidfd -> pid
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        assert self._thread is None, "started twice"
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        self._stopping = True
        os.eventfd_write(self._wake, 1)
        self._thread.join(timeout)
        with self._lock:
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()
        self._epoll.close()
        os.close(self._wake)
        self._thread = None

    def watch(self, pid: int, pidfd: int) -> None:
        """Watch ``pidfd`` (taken over: closed by the reaper). An already ended process is reported
        at once."""
        with self._lock:
            self._fds[pidfd] = pid
        self._epoll.register(pidfd, select.EPOLLIN)

    def _loop(self) -> None:
        while not self._stopping:
            try:
                events = self._epoll.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self._wake:
                    continue
                with self._lock:
                    pid = self._fds.pop(fd, None)
                if pid is None:
                    continue
                try:
                    self._epoll.unregister(fd)
                except OSError as err:
                    if err.errno != errno.EBADF:
                        raise
                os.close(fd)
                try:
                    self._on_exit(pid)
                except Exception:
                    log.exception("exit handling of pid %d failed", pid)
