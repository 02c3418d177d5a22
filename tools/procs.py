"""Reading /proc for the test, demo and benchmark tools: environments, liveness, marked processes.

vkcmd passes its own environment to the processes of its pods, and the runtime adds
``VKCMD_RUN=<run id>``, so a tool finds the processes of *its* node by environment
(e.g. ``VKCMD_RUN`` plus the node's ``HOME``), never by name and never another node's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any


def environ_of(pid: int) -> dict[str, str]:
    """The environment of ``pid`` ({} when it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def cmdline_of(pid: int) -> list[str]:
    """The command line of ``pid`` ([] when it is gone)."""
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def processes_with(env: Mapping[str, str | None]) -> list[int]:
    """Live processes (not this one) whose environment has every key of ``env``, with that value
    (``None``: any value), sorted."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        environ = environ_of(int(entry))
        if all(key in environ and (value is None or environ[key] == value) for key, value in env.items()) \
                and alive(int(entry)):
            found.append(int(entry))
    return sorted(found)


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connects(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts TCP connections on ``host:port`` now."""
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], Any], timeout: float, what: str = "condition",
               interval: float = 0.05) -> Any:
    """The first truthy value of ``predicate()``; TimeoutError (with the last value) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


def kill_groups(processes: Iterable[subprocess.Popen]) -> None:
    """SIGKILL the session (process group) of each process started with ``start_new_session``, and reap it."""
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
