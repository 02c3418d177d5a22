"""Arrival times of container output: one thread notices appends and stamps them.

A container's processes append to ``<container_dir>/stdout`` and ``stderr``
themselves, so vkcmd never sees the bytes pass. :class:`LogIndexer` learns of
appends from inotify (one watch per container *directory*), or by polling sizes
when inotify is unavailable, and records beside each stream file when each
stretch of bytes arrived. :mod:`vkcmd.runtime.logs` turns that into per-line
times. Knows nothing of Kubernetes, HTTP or how processes are spawned.

Index file ``.<name>.idx`` (e.g. ``.stdout.idx``, ``.stdout.previous.idx``), append-only:

- header ``<8sQ``: magic ``VKLOGIX1`` and the inode number of the log file it
  describes (an index whose inode does not match is stale and ignored);
- records ``<QQ`` ``(end, time_ns)``: the bytes ``[previous end, end)`` were
  first seen at ``time_ns`` (wall clock, Unix ns). Ends strictly increase,
  times never decrease (per file).

A line's arrival time is the time of the record covering its first byte, so a
partial line (no newline yet) carries the time of its first byte, and a burst
of lines noticed at once shares one record: the index grows with the number of
appends noticed, not with the number of lines, and stamping never reads the
log bytes. Output written while nobody watched (vkcmd down, container not
watched) is stamped, when it is found, with the file's mtime -- the time of its
last write, so the latest moment it can have arrived -- but never earlier than
the latest record of that container directory (it was written after those).
A file that shrank, was replaced by another inode, or was created anew while
watched, gets a fresh index (a truncation is a reset: what
was cut is gone). A file deleted and re-created *while nobody watched* can get
the same inode number back and is then taken for the old one grown (the runtime
renames runs away with :meth:`LogIndexer.rotate` rather than deleting them).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import selectors
import stat
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from vkcmd.runtime import safefs

log = logging.getLogger("vkcmd.runtime.logindex")

STREAMS = ("stdout", "stderr")
PREVIOUS = ".previous"
TRACKED = STREAMS + tuple(name + PREVIOUS for name in STREAMS)
MAGIC = b"VKLOGIX1"
HEADER = struct.Struct("<8sQ")
RECORD = struct.Struct("<QQ")


def index_name(log_name: str) -> str:
    """The hidden index file of a stream file: ``stdout`` -> ``.stdout.idx``."""
    return f".{log_name}.idx"


# --- inotify through libc ---------------------------------------------------------------

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
_DIR_MASK = (IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
             | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)
_REPLACED = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE  # the name now means another file (or none)
_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED  # the watched directory itself
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (native layout)
_TRACKED_B = frozenset(name.encode() for name in TRACKED)
_INDEX_B = {index_name(name).encode(): name for name in TRACKED}
_FD_CACHE = 256  # index files kept open for appending (the busiest ones), so an append is one write()


class _Inotify:
    """An inotify instance: non-blocking fd, add/remove watches (errors as OSError)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add.restype = ctypes.c_int
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        self._rm.restype = ctypes.c_int
        init = libc.inotify_init1
        init.argtypes = [ctypes.c_int]
        init.restype = ctypes.c_int
        fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd = fd

    def add_watch(self, path: str, mask: int) -> int:
        wd = self._add(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return wd

    def rm_watch(self, wd: int) -> None:
        self._rm(self.fd, wd)  # EINVAL when the kernel already dropped it: nothing to do

    def close(self) -> None:
        os.close(self.fd)


def inotify_watch_limit() -> int | None:
    """``/proc/sys/fs/inotify/max_user_watches`` (per user, shared by every process), None if unknown."""
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


# --- per-file state ------------------------------------------------------------------------

class _Stream:
    """What the index of one stream file says: the inode it describes, how far it goes, its last time."""

    __slots__ = ("loaded", "ino", "end", "last_t")

    def __init__(self) -> None:
        self.loaded = False  # False: read the on-disk index before using end/last_t
        self.ino: int | None = None
        self.end = 0
        self.last_t = 0


class _Container:
    """One watched directory. While held, ``dfd`` is its fd, opened through no symlink, and every
    file of it is reached relative to that (the container may have planted a link at any name, or
    at the directory's own path). Not kept open between uses: an open fd would hold back the
    kernel's IN_DELETE_SELF when the directory is removed."""
    __slots__ = ("path", "wd", "streams", "dfd")

    def __init__(self, path: str) -> None:
        self.path = path
        self.wd: int | None = None  # None: polled
        self.streams = {name: _Stream() for name in TRACKED}
        self.dfd = -1

    @contextlib.contextmanager
    def held(self) -> Iterator[int]:
        """The directory's fd for the block (re-entrant). OSError when it cannot be opened."""
        if self.dfd >= 0:
            yield self.dfd
            return
        self.dfd = safefs.open_dir(self.path)
        try:
            yield self.dfd
        finally:
            os.close(self.dfd)
            self.dfd = -1


def _open_nofollow(dfd: int, name: str, flags: int, mode: int = 0o600) -> int:
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)


def _load(dfd: int, name: str, stream: _Stream, ino: int) -> None:
    """Read the on-disk index of ``name``: where it ends and its last time, if it describes inode ``ino``."""
    stream.loaded, stream.ino, stream.end, stream.last_t = True, None, 0, 0
    try:
        fd = _open_nofollow(dfd, index_name(name), os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size < HEADER.size:
            return
        magic, header_ino = HEADER.unpack(os.pread(fd, HEADER.size, 0))
        if magic != MAGIC or header_ino != ino:
            return
        count = (info.st_size - HEADER.size) // RECORD.size
        stream.ino = ino
        if count:
            raw = os.pread(fd, RECORD.size, HEADER.size + (count - 1) * RECORD.size)
            stream.end, stream.last_t = RECORD.unpack(raw)
        if (info.st_size - HEADER.size) % RECORD.size:  # a torn last append (crash): drop it
            _cut(dfd, name, count)
    finally:
        os.close(fd)


def _cut(dfd: int, name: str, count: int) -> None:
    try:
        fd = _open_nofollow(dfd, index_name(name), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.ftruncate(fd, HEADER.size + count * RECORD.size)
    finally:
        os.close(fd)


def _create(dfd: int, name: str, content: bytes) -> bool:
    """Create ``name`` in ``dfd`` holding ``content``, appearing all at once; False when the name is taken.

    Written into an anonymous ``O_TMPFILE`` and linked into place, so no reader
    sees it half written; in place (``O_EXCL``) where the filesystem lacks that.
    """
    try:
        fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=dfd)
    except OSError:
        fd = None
    if fd is not None:
        try:
            os.write(fd, content)
            # follow_symlinks makes Python call linkat(AT_SYMLINK_FOLLOW) (plain link() cannot follow
            # the /proc magic link); the source path is absolute, so src_dir_fd is not used
            os.link(f"/proc/self/fd/{fd}", name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=True)
            return True
        except FileExistsError:
            return False
        except OSError:
            pass  # no /proc to link from: create it in place below
        finally:
            os.close(fd)
    try:
        fd = safefs.create_exclusive(dfd, name)
    except FileExistsError:
        return False
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    return True


def _rewrite(dfd: int, name: str, ino: int, records: list[tuple[int, int]]) -> None:
    """Write a fresh index of ``name``: created when there is none, else replaced by a rename.

    Replacing by rename leaves a reader that holds the old index with a
    consistent (old) view; a planted symlink is replaced, never followed.
    """
    final = index_name(name)
    content = HEADER.pack(MAGIC, ino) + b"".join(RECORD.pack(*r) for r in records)
    if _create(dfd, final, content):
        return
    temp = safefs.temp_name(final)
    if not _create(dfd, temp, content):
        raise FileExistsError(errno.EEXIST, "index being replaced by someone else", temp)
    safefs.rename_over(dfd, temp, final)


def _in_dir(container: _Container, update: Callable[[], bool]) -> bool:
    """``update()`` with the container's directory held; False when it cannot be opened."""
    try:
        with container.held():
            return update()
    except (FileNotFoundError, NotADirectoryError):  # the directory is gone
        return False
    except OSError as e:
        log.warning("cannot index logs in %s: %s", container.path, e)
        return False


class LogIndexer:
    """Stamps the arrival time of everything the watched containers append to stdout/stderr.

    One thread for all containers. With inotify, an idle node costs nothing and
    an append is stamped as soon as the thread is woken (within a millisecond
    when the machine is not overloaded); under sustained output, events are
    taken in batches at most every ``batch_interval`` seconds, which bounds the
    CPU and index growth and makes the stamps that much coarser. Without
    inotify (or past the watch limit) containers are polled every
    ``poll_interval`` seconds.

    Thread-safe: ``watch``, ``unwatch``, ``rotate``, ``flush``, ``notify`` and
    the change waits may be called from any thread, before or after ``start``
    (``watch`` before ``start`` indexes what is there and begins receiving
    events once started). Directories are keys as given (made absolute).
    """

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns, *, poll_interval: float = 0.5,
                 batch_interval: float = 0.002, use_inotify: bool = True) -> None:
        self._clock_ns = clock_ns
        self._poll_interval = poll_interval
        self._batch_interval = batch_interval
        self._use_inotify = use_inotify
        self._lock = threading.Lock()
        self._events_lock = threading.Lock()  # who reads inotify events processes them before anyone else reads
        self._containers: dict[str, _Container] = {}
        self._by_wd: dict[int, _Container] = {}
        self._polled: set[str] = set()  # watched directories without an inotify watch
        self._inotify: _Inotify | None = None
        self._inotify_tried = False
        self._wake_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._last_now = 0
        self._counter = 0
        self._seq: dict[str, int] = {}
        self._waiters: dict[str, list] = {}  # path -> [Condition, number of waiters]
        self._fds: OrderedDict[tuple[str, str], int] = OrderedDict()  # (directory, name) -> open index
        self.stats = {"events": 0, "batches": 0, "records": 0, "resets": 0, "overflows": 0}

    # --- life ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the indexing thread (once)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("LogIndexer already started")
            self._stopping = False
            self._inotify_tried = False
            self._ensure_inotify()
            self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            for path, container in self._containers.items():  # watched before start: watch, then catch up
                self._add_watch(container)
                if self._update_all(container, live=False):
                    self._changed(path)
            self._thread = threading.Thread(target=self._run, name="log-indexer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it; watches are dropped (the indexes on disk stay)."""
        with self._lock:
            thread = self._thread
            self._stopping = True
        if thread is not None:
            os.eventfd_write(self._wake_fd, 1)
            thread.join()
        with self._events_lock, self._lock:
            if self._inotify is not None:
                self._inotify.close()
                self._inotify = None
            if self._wake_fd is not None:
                os.close(self._wake_fd)
                self._wake_fd = None
            self._by_wd.clear()
            for container in self._containers.values():
                container.wd = None
            self._polled = set(self._containers)
            while self._fds:
                os.close(self._fds.popitem()[1])
            self._thread = None

    @property
    def uses_inotify(self) -> bool:
        return self._inotify is not None

    def watch_counts(self) -> tuple[int, int]:
        """(containers watched through inotify, containers polled)."""
        with self._lock:
            return len(self._containers) - len(self._polled), len(self._polled)

    # --- the public operations ----------------------------------------------------------

    def watch(self, container_dir: str) -> None:
        """Index ``container_dir`` from now on (idempotent).

        Output already in the files and not yet indexed (written while nobody
        watched, e.g. before a restart of vkcmd) is indexed at once, stamped
        with the file's mtime. Raises ``FileNotFoundError`` / ``NotADirectoryError``
        when the directory does not exist, ``OSError`` (ELOOP) when its path has a symlink.
        """
        path = os.path.abspath(container_dir)
        with self._lock:
            if path in self._containers:
                return
            container = _Container(path)
            os.close(safefs.open_dir(path))  # there, a directory, reached through no symlink
            self._containers[path] = container
            self._polled.add(path)
            if self._thread is not None:
                self._add_watch(container)
            changed = self._update_all(container, live=False)
            if changed:
                self._changed(path)
        self._wake()

    def unwatch(self, container_dir: str) -> None:
        """Stop indexing ``container_dir`` after a last catch-up (no-op when not watched).

        Call it before removing the directory: once it returns, the indexer
        writes nothing there, so a recursive removal cannot race with a new index.
        """
        path = os.path.abspath(container_dir)
        with self._lock:
            container = self._containers.pop(path, None)
            if container is None:
                return
            self._polled.discard(path)
            if os.path.isdir(path):
                self._update_all(container, live=True)
            self._drop_watch(container)
            self._forget_fds(path)
            self._changed(path)

    def rotate(self, container_dir: str) -> None:
        """Before a restart: keep the ended run's output as ``stdout.previous`` / ``stderr.previous``.

        Indexes what is left first, then moves each stream file and its index to
        the ``.previous`` names (replacing the older previous run). When a
        stream file is missing, an empty previous one is created, so that the
        previous run is never an older one. The new run creates fresh files.
        """
        path = os.path.abspath(container_dir)
        with self._lock:
            container = self._containers.get(path)
            live = container is not None
            if container is None:
                container = _Container(path)
            with container.held():
                self._rotate(container, live)
            self._changed(path)

    def _rotate(self, container: _Container, live: bool) -> None:
        """(lock held) The moves of :meth:`rotate`, all relative to the directory's fd: a link
        planted at any of the names is renamed or unlinked, never followed; a directory or other
        non-file in the way is moved aside (``safefs.displace``)."""
        dfd = container.dfd
        for name in STREAMS:
            self._update_held(container, name, live=live, floor=0)
        self._forget_fds(container.path)
        for name in STREAMS:
            previous = name + PREVIOUS
            for old in (previous, index_name(previous)):
                safefs.remove_file(dfd, old)
            try:
                safefs.rename_over(dfd, name, previous)
            except FileNotFoundError:
                os.close(safefs.create_exclusive(dfd, previous))
                container.streams[previous] = _Stream()
            else:
                try:
                    safefs.rename_over(dfd, index_name(name), index_name(previous))
                except FileNotFoundError:
                    pass
                container.streams[previous] = container.streams[name]
            fresh = _Stream()
            fresh.loaded = True  # the new run's file does not exist yet: nothing on disk to read
            container.streams[name] = fresh

    def flush(self, container_dir: str) -> None:
        """Index, now and synchronously, whatever the stream files hold (readers call this first).

        Events already queued are handled first, in their order, so that two
        streams written just before are stamped in the order they were written.
        For a watched directory the new bytes are stamped with the current
        time (they arrived since the last event); for one not watched, with the
        files' mtime, as in :meth:`watch`. A missing directory is not an error.
        """
        path = os.path.abspath(container_dir)
        if self._thread is not None:
            self._read_events()
        with self._lock:
            container = self._containers.get(path)
            live = container is not None
            if container is None:
                if not os.path.isdir(path):
                    return
                container = _Container(path)
            if self._update_all(container, live=live):
                self._changed(path)

    def notify(self, container_dir: str) -> None:
        """Wake whoever waits on ``container_dir`` (e.g. the runtime saw the container end)."""
        with self._lock:
            self._changed(os.path.abspath(container_dir))

    def changes(self, container_dir: str) -> int:
        """A token for :meth:`wait_for_change`: take it *before* looking at the files."""
        with self._lock:
            return self._seq.get(os.path.abspath(container_dir), 0)

    def wait_for_change(self, container_dir: str, token: int, timeout: float | None) -> int:
        """Block until ``container_dir`` changed since ``token`` was taken, or ``timeout``; return a new token.

        A change is new output indexed, a stream file replaced or closed by a
        writer, a rotation, or :meth:`notify`. May return early (spuriously).
        """
        path = os.path.abspath(container_dir)
        with self._lock:
            entry = self._waiters.get(path)
            if entry is None:
                entry = self._waiters[path] = [threading.Condition(self._lock), 0]
            entry[1] += 1
            try:
                entry[0].wait_for(lambda: self._seq.get(path, 0) != token, timeout)
            finally:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._waiters[path]
            return self._seq.get(path, 0)

    # --- internals (callers hold self._lock) -----------------------------------------------

    def _now(self) -> int:
        now = max(self._clock_ns(), self._last_now)
        self._last_now = now
        return now

    def _changed(self, path: str) -> None:
        self._counter += 1
        self._seq[path] = self._counter
        entry = self._waiters.get(path)
        if entry is not None:
            entry[0].notify_all()
        if path not in self._containers and entry is None:
            self._seq.pop(path, None)  # nobody can hold an older token that a missing entry would not satisfy

    def _update_all(self, container: _Container, *, live: bool) -> bool:
        return _in_dir(container, lambda: self._update_all_held(container, live=live))

    def _update_all_held(self, container: _Container, *, live: bool) -> bool:
        floor = 0
        if not live:  # catching up: what nobody indexed came after everything indexed in this directory
            for name in TRACKED:
                self._stat(container, name)
            floor = max(stream.last_t for stream in container.streams.values())
        changed = False
        for name in TRACKED:
            changed |= self._update_held(container, name, live=live, floor=floor)
        return changed

    def _stat(self, container: _Container, name: str) -> os.stat_result | None:
        """The stream file's stat (None when absent or not a regular file), its on-disk index loaded."""
        stream = container.streams[name]
        try:
            info = os.stat(name, dir_fd=container.dfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            stream.loaded, stream.ino, stream.end, stream.last_t = True, None, 0, 0
            return None
        if not stat.S_ISREG(info.st_mode):  # a symlink or anything else is never indexed (nor read)
            return None
        if not stream.loaded:
            _load(container.dfd, name, stream, info.st_ino)
        return info

    def _update(self, container: _Container, name: str, *, live: bool, floor: int = 0) -> bool:
        """Bring the index of one stream file up to the file's size; True when a record was written."""
        return _in_dir(container, lambda: self._update_held(container, name, live=live, floor=floor))

    def _update_held(self, container: _Container, name: str, *, live: bool, floor: int) -> bool:
        directory = container.path
        stream = container.streams[name]
        info = self._stat(container, name)
        if info is None:
            return False
        try:
            if stream.ino != info.st_ino or info.st_size < stream.end:
                if stream.ino is not None:
                    self.stats["resets"] += 1
                stream.ino, stream.end, stream.last_t = info.st_ino, 0, 0
                records = []
                if info.st_size:
                    records.append((info.st_size, self._stamp(stream, info, live, floor)))
                self._forget_fds(directory, (name,))
                _rewrite(container.dfd, name, info.st_ino, records)
            elif info.st_size > stream.end:
                self._append(container, name, stream, info.st_size, self._stamp(stream, info, live, floor))
            else:
                return False
        except OSError as e:
            stream.loaded = False  # re-read from disk next time
            if os.path.isdir(directory):
                log.warning("cannot write log index of %s/%s: %s", directory, name, e)
            return False
        if info.st_size:
            stream.end = info.st_size
        self.stats["records"] += 1
        return True

    def _append(self, container: _Container, name: str, stream: _Stream, end: int, when: int) -> None:
        """Add one record; an index that vanished or became a symlink is rewritten.

        The index stays open for the next append only in a directory watched
        through inotify, where we hear when someone else deletes or replaces it.
        """
        directory = container.path
        key = (directory, name)
        fd = self._fds.get(key)
        cache = self._containers.get(directory) is container and container.wd is not None
        if fd is not None:
            self._fds.move_to_end(key)
        else:
            try:
                fd = _open_nofollow(container.dfd, index_name(name), os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ELOOP, errno.EISDIR, errno.ENXIO):
                    raise
                _rewrite(container.dfd, name, stream.ino or 0, [(end, when)])
                return
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO with a reader, a device
                os.close(fd)
                _rewrite(container.dfd, name, stream.ino or 0, [(end, when)])
                return
            if cache:
                self._fds[key] = fd
                if len(self._fds) > _FD_CACHE:
                    os.close(self._fds.popitem(last=False)[1])
        try:
            os.write(fd, RECORD.pack(end, when))
        except OSError:
            self._forget_fds(directory, (name,))
            raise
        finally:
            if not cache and self._fds.get(key) != fd:
                os.close(fd)

    def _forget_fds(self, directory: str, names: tuple[str, ...] = TRACKED) -> None:
        for name in names:
            fd = self._fds.pop((directory, name), None)
            if fd is not None:
                os.close(fd)

    def _stamp(self, stream: _Stream, info: os.stat_result, live: bool, floor: int) -> int:
        if live:
            when = self._now()
        else:  # mtime comes from the kernel's coarse clock: it may lag a fine-clock stamp by a tick
            when = min(max(info.st_mtime_ns, floor), self._clock_ns())
        when = max(when, stream.last_t)
        stream.last_t = when
        return when

    def _ensure_inotify(self) -> None:
        if self._inotify_tried:
            return
        self._inotify_tried = True
        if not self._use_inotify:
            return
        try:
            self._inotify = _Inotify()
        except (OSError, AttributeError) as e:
            log.warning("inotify unavailable (%s): polling log files every %.1fs", e, self._poll_interval)

    def _add_watch(self, container: _Container) -> None:
        if self._inotify is None:
            return
        try:
            wd = self._inotify.add_watch(container.path, _DIR_MASK)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                log.warning("inotify watch limit reached (max_user_watches=%s): polling %s",
                            inotify_watch_limit(), container.path)
                return
            raise
        other = self._by_wd.get(wd)
        if other is not None and other is not container:  # the same directory under another spelling
            container.streams = other.streams
        container.wd = wd
        self._by_wd[wd] = container
        self._polled.discard(container.path)

    def _drop_watch(self, container: _Container) -> None:
        self._forget_fds(container.path)
        if container.wd is None:
            return
        if self._by_wd.get(container.wd) is container:
            del self._by_wd[container.wd]
            if self._inotify is not None:
                self._inotify.rm_watch(container.wd)
        container.wd = None

    def _wake(self) -> None:
        fd = self._wake_fd
        if fd is not None:
            try:
                os.eventfd_write(fd, 1)
            except OSError:
                pass

    # --- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_fd, selectors.EVENT_READ, "wake")
        if self._inotify is not None:
            selector.register(self._inotify.fd, selectors.EVENT_READ, "inotify")
        next_poll = time.monotonic() + self._poll_interval
        last_batch = 0.0
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        return
                    polled = bool(self._polled)
                try:
                    next_poll, last_batch = self._turn(selector, polled, next_poll, last_batch)
                except Exception:  # keep indexing the other containers; readers flush for themselves anyway
                    log.exception("log indexer: unexpected error (continuing)")
                    time.sleep(self._poll_interval)
        finally:
            selector.close()

    def _turn(self, selector: selectors.BaseSelector, polled: bool, next_poll: float,
              last_batch: float) -> tuple[float, float]:
        """One wait for events (or the next poll), and what follows it."""
        timeout = max(0.0, next_poll - time.monotonic()) if polled else None
        ready = selector.select(timeout)
        if any(key.data == "inotify" for key, _ in ready):
            # under sustained output take events at most every batch_interval: a burst of appends
            # gathers into one batch (one record per file); after a quiet spell, at once
            wait = last_batch + self._batch_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            last_batch = time.monotonic()
            self._read_events()
        for key, _ in ready:
            if key.data == "wake":
                try:
                    os.eventfd_read(self._wake_fd)
                except BlockingIOError:
                    pass
        if polled and time.monotonic() >= next_poll:
            self._poll()
            next_poll = time.monotonic() + self._poll_interval
        return next_poll, last_batch

    def _poll(self) -> None:
        with self._lock:
            for path in list(self._polled):
                container = self._containers.get(path)
                if container is not None and self._update_all(container, live=True):
                    self._changed(path)

    def _read_events(self) -> None:
        with self._events_lock:
            if self._inotify is None:
                return
            chunks = []
            while True:
                try:
                    chunk = os.read(self._inotify.fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            if chunks:
                self._process_events(chunks)

    def _process_events(self, chunks: list[bytes]) -> None:
        touched: dict[tuple[int, bytes], int] = {}  # (wd, name) -> masks
        first_data: dict[tuple[int, bytes], int] = {}  # (wd, name) -> position of its first IN_MODIFY
        replaced_indexes: list[tuple[int, str]] = []  # someone else deleted or replaced one of our indexes
        gone: list[int] = []
        overflow = False
        count = 0
        for data in chunks:
            offset, size = 0, len(data)
            while offset < size:
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                start = offset + _EVENT.size
                offset = start + length
                count += 1
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                elif mask & _GONE and not length:
                    gone.append(wd)
                elif length:
                    name = data[start:offset].rstrip(b"\0")
                    if name in _TRACKED_B:
                        key = (wd, name)
                        touched[key] = touched.get(key, 0) | mask
                        if mask & IN_MODIFY and key not in first_data:
                            first_data[key] = count
                    elif mask & _REPLACED and name in _INDEX_B:
                        replaced_indexes.append((wd, _INDEX_B[name]))
        with self._lock:
            self.stats["events"] += count
            self.stats["batches"] += 1
            notify = set()
            for wd, name in replaced_indexes:
                container = self._by_wd.get(wd)
                if container is not None:
                    self._forget_fds(container.path, (name,))
            if overflow:
                self.stats["overflows"] += 1
                for container in self._containers.values():
                    if container.wd is not None and self._update_all(container, live=True):
                        notify.add(container.path)
            # files are stamped in the order their first new bytes arrived (each stamp later than the last):
            # a stream written first sorts first even when the other's bytes are found in the same batch;
            # bytes in a file with no IN_MODIFY here were written after these events were read: last
            for (wd, raw) in sorted(touched, key=lambda key: first_data.get(key, count)):
                mask = touched[(wd, raw)]
                container = self._by_wd.get(wd)
                if container is None:
                    continue
                name = raw.decode()
                if mask & IN_CREATE:  # a new file, even if it got the old one's inode number back
                    stream = container.streams[name]
                    stream.loaded, stream.ino, stream.end, stream.last_t = True, None, 0, 0
                elif mask & _REPLACED:
                    container.streams[name].loaded = False
                if self._update(container, name, live=True) or mask & (IN_CLOSE_WRITE | _REPLACED):
                    notify.add(container.path)
            for wd in gone:
                container = self._by_wd.pop(wd, None)
                if container is not None:  # the directory was removed (pod deleted) or moved away
                    self._inotify.rm_watch(wd)  # a moved directory keeps its watch otherwise
                    container.wd = None
                    self._forget_fds(container.path)
                    if self._containers.get(container.path) is container:
                        del self._containers[container.path]
                        self._polled.discard(container.path)
                    notify.add(container.path)
            for path in notify:
                self._changed(path)
