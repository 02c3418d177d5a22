"""The workspace on disk: ``<root>/<namespace>/<pod>/`` and the safe ways to write into and remove it.

Everything staging writes goes through here. Names are validated before they
become path components; a path given by a pod spec is made relative and may not
contain ``..``; directories are walked one component at a time, and a symlink
met on the way must resolve inside the directory it is in, so nothing is ever
written outside a pod's directory. Removal never follows a symlink.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable
from typing import Any

from vkcmd.pods.errors import WorkspaceError

DIR_MODE = 0o750

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_TMP_PREFIX = ".vkcmd-"
REMOVED = ".vkcmd-removed"  # under the root: pod directories moved out of the workspace, being removed


def check_label(kind: str, name: object) -> str:
    """``name`` if it is a DNS label (namespace, container, volume names); ``WorkspaceError`` otherwise."""
    if not isinstance(name, str) or len(name) > 63 or not _DNS_LABEL.fullmatch(name):
        raise WorkspaceError(f"invalid {kind} name {name!r}: must be a DNS label (a-z, 0-9, '-', at most 63)")
    return name


def check_subdomain(kind: str, name: object) -> str:
    """``name`` if it is a DNS subdomain (pod names); ``WorkspaceError`` otherwise."""
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise WorkspaceError(f"invalid {kind} name {name!r}: must be a DNS subdomain")
    return name


def relative_parts(path: str, what: str) -> tuple[str, ...]:
    """The components of ``path`` taken relative (a leading ``/`` dropped, ``.`` and empty parts skipped).

    ``WorkspaceError`` when a component is ``..`` or the path is not a string.
    """
    if not isinstance(path, str) or "\0" in path:
        raise WorkspaceError(f"invalid {what} {path!r}")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise WorkspaceError(f"{what} {path!r} must not contain '..'")
    return parts


def within(path: str, base: str) -> bool:
    """Whether the (resolved) ``path`` is ``base`` or under it."""
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def ensure_dir(base: str, parts: tuple[str, ...], *, mode: int = DIR_MODE, what: str = "path") -> str:
    """``base/parts...`` as a directory, created as needed, never leaving ``base``.

    A component that is a symlink is accepted only when it resolves to a
    directory inside ``base``; anything else raises ``WorkspaceError``.
    """
    base = os.path.realpath(base)
    current = base
    for part in parts:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            try:
                os.mkdir(current, mode)
            except FileExistsError:  # raced with another stager: look again
                st = os.lstat(current)
            else:
                continue
        if stat.S_ISLNK(st.st_mode):
            resolved = os.path.realpath(current)
            if not within(resolved, base) or not os.path.isdir(resolved):
                raise WorkspaceError(f"{what} {current!r} is a symlink leading out of {base!r}")
        elif not stat.S_ISDIR(st.st_mode):
            raise WorkspaceError(f"{what} {current!r} exists and is not a directory")
    if not within(os.path.realpath(current), base):
        raise WorkspaceError(f"{what} {current!r} resolves outside {base!r}")
    return current


def temp_name(prefix: str = "tmp") -> str:
    """A hidden, unique name for a sibling that is built and then renamed into place."""
    return f"{_TMP_PREFIX}{prefix}-{secrets.token_hex(6)}"


def create_file(path: str, data: bytes, mode: int) -> None:
    """A new file (never through a symlink, never over an existing entry) with ``data`` and ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def replace_entry(parent: str, name: str, build: Callable[[str], None]) -> str:
    """``parent/name`` replaced by what ``build(path)`` creates at a temporary sibling path.

    The old entry (file, tree or symlink, never followed) is renamed away first
    and removed afterwards, so the new one appears whole.
    """
    final = os.path.join(parent, name)
    fresh = os.path.join(parent, temp_name("new"))
    try:
        build(fresh)
    except BaseException:
        remove_path(fresh, missing_ok=True)
        raise
    old = None
    if os.path.lexists(final):
        old = os.path.join(parent, temp_name("old"))
        os.rename(final, old)
    os.rename(fresh, final)
    if old is not None:
        remove_path(old)
    return final


def _open_dir(dir_fd: int | None, name: str) -> int:
    """An fd of the directory ``name`` (never a symlink), even when its mode denies reading."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.chmod(f"/proc/self/fd/{handle}", 0o700)
        finally:
            os.close(handle)
        return os.open(name, flags, dir_fd=dir_fd)


def _retry_writable(dir_fd: int, action: Callable[[], None]) -> None:
    try:
        action()
    except PermissionError:  # the containing directory was made read-only
        os.fchmod(dir_fd, stat.S_IMODE(os.fstat(dir_fd).st_mode) | 0o700)
        action()


def _remove_in(dir_fd: int, name: str) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        _retry_writable(dir_fd, lambda: os.unlink(name, dir_fd=dir_fd))
        return
    fd = _open_dir(dir_fd, name)
    try:
        if stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
        for child in os.listdir(fd):
            _remove_in(fd, child)
    finally:
        os.close(fd)
    _retry_writable(dir_fd, lambda: os.rmdir(name, dir_fd=dir_fd))


def remove_path(path: str, *, missing_ok: bool = False) -> None:
    """Remove a file, a symlink (not its target) or a whole tree, read-only parts included."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        parent_fd = _open_dir(None, parent)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    try:
        _remove_in(parent_fd, name)
    except FileNotFoundError:
        if not missing_ok:
            raise
    finally:
        os.close(parent_fd)


class Workspace:
    """The directories of pods and containers under one root (SPEC §3).

    ``<root>/<namespace>/<pod>/``, its ``volumes/<volume>/`` and its
    ``containers/<container>/``. Constructing one touches nothing; the
    ``ensure_*`` methods create what is missing. :meth:`pod_lock` serialises
    writes of pod-level volume data by the stagers of one pod's containers.
    """

    def __init__(self, root: str | os.PathLike[str], *, dir_mode: int = DIR_MODE) -> None:
        self.root = os.path.realpath(os.fspath(root))
        self.dir_mode = dir_mode
        self._locks_guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def pod_lock(self, namespace: str, pod: str) -> threading.Lock:
        """The lock of one pod's shared directories (``volumes/``); forgotten by :meth:`remove_pod`."""
        with self._locks_guard:
            return self._locks.setdefault((namespace, pod), threading.Lock())

    def __repr__(self) -> str:
        return f"Workspace({self.root!r})"

    # --- paths (validated, nothing created) --------------------------------

    def pod_dir(self, namespace: str, pod: str) -> str:
        check_label("namespace", namespace)
        check_subdomain("pod", pod)
        return os.path.join(self.root, namespace, pod)

    def container_dir(self, namespace: str, pod: str, container: str) -> str:
        check_label("container", container)
        return os.path.join(self.pod_dir(namespace, pod), "containers", container)

    def volume_dir(self, namespace: str, pod: str, volume: str) -> str:
        check_label("volume", volume)
        return os.path.join(self.pod_dir(namespace, pod), "volumes", volume)

    # --- creation -----------------------------------------------------------

    def ensure_pod(self, namespace: str, pod: str) -> str:
        """``<root>/<namespace>/<pod>/``, created as needed (the root too)."""
        self.pod_dir(namespace, pod)
        os.makedirs(self.root, mode=self.dir_mode, exist_ok=True)
        return ensure_dir(self.root, (namespace, pod), mode=self.dir_mode, what="pod directory")

    def ensure_container(self, namespace: str, pod: str, container: str) -> str:
        """``<root>/<namespace>/<pod>/containers/<container>/``, created as needed."""
        self.container_dir(namespace, pod, container)
        pod_dir = self.ensure_pod(namespace, pod)
        return ensure_dir(pod_dir, ("containers", container), mode=self.dir_mode, what="container directory")

    def ensure_volume(self, namespace: str, pod: str, volume: str) -> str:
        """``<root>/<namespace>/<pod>/volumes/<volume>/``, created as needed (emptyDir data)."""
        self.volume_dir(namespace, pod, volume)
        pod_dir = self.ensure_pod(namespace, pod)
        return ensure_dir(pod_dir, ("volumes", volume), mode=self.dir_mode, what="volume directory")

    # --- listing and removal -------------------------------------------------

    def pods(self) -> list[tuple[str, str]]:
        """(namespace, pod) of every pod directory under the root, for cleaning up after a restart."""
        found = []
        try:
            namespaces = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        for namespace in namespaces:
            ns_dir = os.path.join(self.root, namespace)
            if not _DNS_LABEL.fullmatch(namespace) or os.path.islink(ns_dir) or not os.path.isdir(ns_dir):
                continue
            for pod in sorted(os.listdir(ns_dir)):
                pod_dir = os.path.join(ns_dir, pod)
                if (_DNS_SUBDOMAIN.fullmatch(pod) and not os.path.islink(pod_dir)
                        and os.path.isdir(os.path.join(pod_dir, "containers"))):
                    found.append((namespace, pod))
        return found

    def remove_pod(self, namespace: str, pod: str) -> bool:
        """Remove ``<root>/<namespace>/<pod>`` entirely; False when there was nothing to remove.

        Works through directory file descriptors opened without following
        symlinks: a symlink inside the tree is unlinked, never followed; a
        namespace directory that is a symlink is refused (``WorkspaceError``);
        read-only files and directories are made writable first.
        """
        return self._with_pod(namespace, pod, lambda ns_fd: _remove_in(ns_fd, pod)) is not None

    def detach_pod(self, namespace: str, pod: str) -> str | None:
        """Move ``<root>/<namespace>/<pod>`` out of the workspace in one rename, into
        ``<root>/.vkcmd-removed/`` (no namespace has a name with a dot), and return where it went, for
        :func:`remove_path`; None when there was nothing. The same checks as :meth:`remove_pod`
        (a pod directory that is a symlink is moved as the link, never followed)."""
        def move(ns_fd: int) -> str:
            os.makedirs(os.path.join(self.root, REMOVED), mode=0o700, exist_ok=True)
            trash_fd = _open_dir(None, os.path.join(self.root, REMOVED))
            try:
                name = f"{namespace}.{pod}.{secrets.token_hex(6)}"
                os.rename(pod, name, src_dir_fd=ns_fd, dst_dir_fd=trash_fd)
            finally:
                os.close(trash_fd)
            return os.path.join(self.root, REMOVED, name)
        return self._with_pod(namespace, pod, move)

    def removed(self) -> list[str]:
        """What :meth:`detach_pod` moved out and nobody removed yet (vkcmd stopped meanwhile)."""
        trash = os.path.join(self.root, REMOVED)
        try:
            return [os.path.join(trash, name) for name in sorted(os.listdir(trash))]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _with_pod(self, namespace: str, pod: str, action: Callable[[int], Any]) -> Any:
        """``action(fd of the namespace directory)`` when ``<root>/<namespace>/<pod>`` exists (its
        result; None when it does not). Forgets the pod's lock; refuses a namespace symlink."""
        self.pod_dir(namespace, pod)
        with self._locks_guard:
            self._locks.pop((namespace, pod), None)
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                ns_fd = os.open(namespace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise WorkspaceError(
                        f"refusing to remove pod {namespace}/{pod}: {os.path.join(self.root, namespace)!r}"
                        " is not a directory of the workspace") from None
                raise
            try:
                try:
                    os.stat(pod, dir_fd=ns_fd, follow_symlinks=False)
                except FileNotFoundError:
                    return None
                result = action(ns_fd)
                return True if result is None else result
            finally:
                os.close(ns_fd)
        finally:
            os.close(root_fd)
