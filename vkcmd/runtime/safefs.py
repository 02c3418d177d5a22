"""Writes into a directory a container can write: relative to a directory fd, never through a link.

A container runs as vkcmd's user and may plant a symlink, a directory or a FIFO at any name vkcmd
uses in its container directory (``pgid``, ``stdout``, ``stdout.previous``, index files, their
temporary siblings). Every write there goes through here: the directory is opened once without
following a link (``openat2`` RESOLVE_NO_SYMLINKS where the kernel has it, else ``O_NOFOLLOW`` on
its last component), files are created ``O_EXCL|O_NOFOLLOW`` under unguessable names and renamed
into place, and an entry of the wrong type is renamed aside (``.vkcmd-displaced-*``, removed with
the workspace), never followed and never deleted through. Knows nothing of runs or pods.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import secrets
import stat
import struct

#: Names vkcmd gives to entries it moved out of its way (workspace removal deletes them).
DISPLACED_PREFIX = ".vkcmd-displaced-"
_TMP_PREFIX = ".vkcmd-tmp-"
_NR_OPENAT2 = 437                      # the same number on every architecture (unified syscall table)
_RESOLVE_NO_SYMLINKS = 0x04
_OPEN_HOW = struct.Struct("QQQ")       # struct open_how: flags, mode, resolve
_openat2_missing = False
_syscall = None


class UnsafeEntry(OSError):
    """A name vkcmd must write is taken by something it cannot use and could not move aside."""


def _openat2(path: str, flags: int) -> int | None:
    """openat2(AT_FDCWD, path, flags, RESOLVE_NO_SYMLINKS); None when the kernel lacks it."""
    global _openat2_missing, _syscall
    if _openat2_missing:
        return None
    if _syscall is None:
        _syscall = ctypes.CDLL(None, use_errno=True).syscall
        _syscall.restype = ctypes.c_long
    how = _OPEN_HOW.pack(flags, 0, _RESOLVE_NO_SYMLINKS)
    fd = _syscall(ctypes.c_long(_NR_OPENAT2), ctypes.c_int(-100), ctypes.c_char_p(os.fsencode(path)),
                  ctypes.c_char_p(how), ctypes.c_size_t(_OPEN_HOW.size))
    if fd >= 0:
        return fd
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM, errno.E2BIG):   # old kernel, or a seccomp filter
        _openat2_missing = True
        return None
    raise OSError(err, os.strerror(err), path)


def open_dir(path: str | os.PathLike) -> int:
    """An fd of the directory ``path`` reached without following any symlink (ELOOP/ENOTDIR else)."""
    path = os.path.abspath(os.fspath(path))
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = _openat2(path, flags)
    return fd if fd is not None else os.open(path, flags)


def temp_name(what: str) -> str:
    return f"{_TMP_PREFIX}{what}-{secrets.token_hex(8)}"


def displace(dfd: int, name: str) -> str | None:
    """Rename whatever ``name`` is (never followed) to a hidden name beside it; None when absent."""
    aside = f"{DISPLACED_PREFIX}{name}-{secrets.token_hex(6)}"
    try:
        os.rename(name, aside, src_dir_fd=dfd, dst_dir_fd=dfd)
    except FileNotFoundError:
        return None
    return aside


def is_regular(dfd: int, name: str) -> bool | None:
    """True for a regular file, False for anything else (a symlink included), None when absent."""
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return None


def create_exclusive(dfd: int, name: str, mode: int = 0o600) -> int:
    """A new empty file ``name`` in ``dfd``, open for writing; never through a link, never an old one."""
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def replace_file(dfd: int, name: str, data: bytes, mode: int = 0o644) -> None:
    """``name`` in ``dfd`` atomically replaced by a file holding ``data`` (readers see old or new).

    The temporary sibling has an unguessable name and is created ``O_EXCL|O_NOFOLLOW``; the rename
    replaces a symlink at ``name`` rather than following it; a directory there is moved aside.
    """
    tmp = temp_name(name)
    fd = create_exclusive(dfd, tmp, mode)
    try:
        _write_all(fd, data)
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        os.unlink(tmp, dir_fd=dfd)
        raise
    os.close(fd)
    try:
        rename_over(dfd, tmp, name)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except FileNotFoundError:
            pass
        raise


def rename_over(dfd: int, src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` in ``dfd``; a directory (or non-file) in the way is moved aside first."""
    try:
        os.rename(src, dst, src_dir_fd=dfd, dst_dir_fd=dfd)
        return
    except OSError as err:
        if err.errno not in (errno.EISDIR, errno.ENOTDIR, errno.ENOTEMPTY, errno.EEXIST):
            raise
    displace(dfd, dst)
    os.rename(src, dst, src_dir_fd=dfd, dst_dir_fd=dfd)


def remove_file(dfd: int, name: str) -> None:
    """Unlink ``name`` (a symlink itself, never its target); a directory there is moved aside."""
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass
    except (IsADirectoryError, PermissionError):     # unlink(2) of a directory: EISDIR, or EPERM
        try:
            is_dir = stat.S_ISDIR(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return
        if not is_dir:
            raise
        displace(dfd, name)


def open_append(dfd: int, name: str, mode: int = 0o644) -> int:
    """An fd appending to the regular file ``name`` (created when absent). A symlink, directory, FIFO
    or device at ``name`` is moved aside and a fresh file created: the run's output never goes
    anywhere but into a regular file of this directory, and opening never blocks."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for _ in range(3):
        try:
            fd = os.open(name, flags | os.O_CREAT, mode, dir_fd=dfd)
        except OSError as err:
            # ELOOP: a symlink; EISDIR: a directory; ENXIO: a FIFO without reader; ENODEV and the
            # like: a device; EACCES: a file made unwritable
            if err.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENODEV, errno.EACCES,
                                 errno.EPERM, errno.EOPNOTSUPP, errno.ETXTBSY):
                raise
            if displace(dfd, name) is None:     # nothing there: the directory itself refuses
                raise
            continue
        if stat.S_ISREG(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            return fd
        os.close(fd)                    # a FIFO with a reader, a device: not ours to write into
        displace(dfd, name)
    raise UnsafeEntry(errno.EEXIST, "keeps being replaced by something that is not a regular file", name)
