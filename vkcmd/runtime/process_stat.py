"""Reading one process's facts from procfs: /proc/<pid>/stat, statm, environ, and the boot id.

A leaf of the runtime: plain functions over a proc root (``/proc`` unless a test passes another),
no state, no knowledge of runs. Every reader returns None when the process is gone.
"""

from __future__ import annotations

import os
from typing import NamedTuple

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MARKER = "VKCMD_RUN"
_MARKER_B = MARKER.encode() + b"="


class Stat(NamedTuple):
    """The fields of /proc/<pid>/stat that the runtime uses."""
    pid: int
    state: str        # R, S, D, Z, T, ...
    ppid: int
    pgrp: int
    sid: int
    cpu_ticks: int    # utime + stime + cutime + cstime, in clock ticks
    start: int        # starttime: clock ticks after boot; with the pid, names a process for good
    rss_pages: int


def parse_stat(pid: int, data: bytes) -> Stat:
    # comm (field 2) may hold spaces and parentheses: split after the last ')'
    f = data[data.rindex(b")") + 2:].split()
    return Stat(pid, f[0].decode(), int(f[1]), int(f[2]), int(f[3]),
                int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]), int(f[19]), int(f[21]))


def _read(path: str, size: int = 4096) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_stat(pid: int, proc: str = "/proc") -> Stat | None:
    data = _read(f"{proc}/{pid}/stat", 1024)
    if not data:
        return None
    try:
        return parse_stat(pid, data)
    except (ValueError, IndexError):
        return None


def parse_statm(data: bytes) -> tuple[int, int]:
    """(resident pages, anonymous resident pages = resident - file-backed/shared) from statm."""
    f = data.split(None, 3)
    resident, shared = int(f[1]), int(f[2])
    return resident, max(resident - shared, 0)


def read_marker(pid: int, proc: str = "/proc") -> str | None:
    """The value of VKCMD_RUN in the process's initial environment, or None (also when unreadable)."""
    try:
        fd = os.open(f"{proc}/{pid}/environ", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if data.startswith(_MARKER_B):
        at = 0
    else:
        at = data.find(b"\0" + _MARKER_B) + 1
        if at == 0:
            return None
    end = data.find(b"\0", at)
    value = data[at + len(_MARKER_B): end if end >= 0 else len(data)]
    return value.decode(errors="replace") or None


def boot_id(proc: str = "/proc") -> str:
    data = _read(f"{proc}/sys/kernel/random/boot_id")
    return data.decode().strip() if data else ""


def children_of(pid: int, proc: str = "/proc") -> bytes | None:
    """The pids of the children of every thread of ``pid`` now, as the kernel lists them (space
    separated, by thread); None when the kernel cannot tell (no ``CONFIG_PROC_CHILDREN``) or
    ``pid`` is gone."""
    parts = []
    try:
        tasks = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"{proc}/{pid}/task/{tid}/children", "rb") as handle:
                parts.append(handle.read())
        except FileNotFoundError:
            if tid == str(pid):
                return None
        except OSError:
            continue
    return b" ".join(parts)
