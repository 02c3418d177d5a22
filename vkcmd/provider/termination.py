"""A container's termination message, read at exit as the kubelet does: its file, else its logs.

``terminationMessagePath`` (default ``/dev/termination-log``) is re-rooted under the
container directory like every absolute path; at most 4096 bytes are read. With
``FallbackToLogsOnError``, an empty message after a non-zero exit is the tail of the
log (80 lines, 2048 bytes). The container owns that directory and may have planted
links or FIFOs: every component is opened relative to a directory fd with
``O_NOFOLLOW`` and non-blocking, and only a regular file is read.
"""

from __future__ import annotations

import os
import stat
from typing import Any

DEFAULT_PATH = "/dev/termination-log"
MESSAGE_LIMIT = 4096
LOG_LINES, LOG_BYTES = 80, 2048
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def termination_message(container_dir: str, spec: dict[str, Any], exit_code: int) -> str:
    """The message of a run of ``spec`` that ended with ``exit_code`` ("" when there is none)."""
    relative = str(spec.get("terminationMessagePath") or DEFAULT_PATH)
    message = _read(container_dir, relative, MESSAGE_LIMIT, tail=False)
    if message or exit_code == 0 or spec.get("terminationMessagePolicy") != "FallbackToLogsOnError":
        return message
    text = "".join(_read(container_dir, name, LOG_BYTES, tail=True) for name in ("stdout", "stderr"))
    lines = text.splitlines(keepends=True)[-LOG_LINES:]
    return "".join(lines).encode()[-LOG_BYTES:].decode("utf-8", "ignore")


def prepare(container_dir: str, spec: dict[str, Any]) -> None:
    """Before a run: create the message file's directory (``dev/``), never through a link; and drop
    the previous run's message, so that a run that writes none has none."""
    parts = _parts(str(spec.get("terminationMessagePath") or DEFAULT_PATH))
    if not parts:
        return
    fd = _walk(container_dir, parts[:-1], create=True)
    if fd is None:
        return
    try:
        os.unlink(parts[-1], dir_fd=fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _parts(path: str) -> list[str]:
    parts = [p for p in path.lstrip("/").split("/") if p not in ("", ".")]
    return [] if ".." in parts else parts


def _walk(container_dir: str, dirs: list[str], create: bool = False) -> int | None:
    """An fd of ``container_dir``/``dirs``, reached through no symlink (None when it cannot be)."""
    try:
        fd = os.open(container_dir, _FLAGS | os.O_DIRECTORY)
    except OSError:
        return None
    for part in dirs:
        try:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            inner = os.open(part, _FLAGS | os.O_DIRECTORY, dir_fd=fd)
        except OSError:  # missing, a link, not a directory
            os.close(fd)
            return None
        os.close(fd)
        fd = inner
    return fd


def _read(container_dir: str, relative: str, limit: int, tail: bool) -> str:
    parts = _parts(relative)
    if not parts:
        return ""
    fd = _walk(container_dir, parts[:-1])
    if fd is None:
        return ""
    try:
        leaf = os.open(parts[-1], _FLAGS, dir_fd=fd)
    except OSError:
        os.close(fd)
        return ""
    os.close(fd)
    try:
        info = os.fstat(leaf)
        if not stat.S_ISREG(info.st_mode):
            return ""
        if tail and info.st_size > limit:
            os.lseek(leaf, info.st_size - limit, os.SEEK_SET)
        data = os.read(leaf, limit)
    except OSError:
        return ""
    finally:
        os.close(leaf)
    return data.decode("utf-8", "replace")
