"""Arrival times of container output: one thread notices appends and stamps them.

A container's processes append to ``<container_dir>/stdout`` and ``stderr``
themselves, so vkcmd never sees the bytes pass. :class:`LogIndexer` learns of
appends from inotify (one watch per container *directory*), or by polling sizes
when inotify is unavailable, and records beside each stream file when each
stretch of bytes arrived. :mod:`vkcmd.containerlogs.reader` turns that into per-line
times; the format is :mod:`vkcmd.containerlogs.indexfile`'s. Knows nothing of Kubernetes, HTTP or
how processes are spawned.

When what is found is stamped (live, or from the file's mtime when nobody watched) and when an
index is reset is told in :mod:`vkcmd.containerlogs.indexfile`. The order of stdout against stderr is
exact to the indexer's latency: bytes are stamped when their file is read, so writes to both files
closer together than one batch (a few ms when idle, more when the machine is starved) may share it;
a catch-up reads both files' sizes at one instant, so it never puts a later write first.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable

from vkcmd.containerlogs import inotify
from vkcmd.containerlogs.directory import LogDir
from vkcmd.containerlogs.indexfile import TRACKED, IndexWriter, index_name
from vkcmd.runtime import safefs

log = logging.getLogger("vkcmd.containerlogs")

_TRACKED_B = frozenset(name.encode() for name in TRACKED)
_INDEX_B = {index_name(name).encode(): name for name in TRACKED}
#: Events after which a stream file is read: new bytes, or the name now meaning another file
_READ_NOW = inotify.IN_MODIFY | inotify.IN_MOVED_TO | inotify.IN_MOVED_FROM | inotify.IN_DELETE


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
        self._writer = IndexWriter(clock_ns)
        self._poll_interval = poll_interval
        self._batch_interval = batch_interval
        self._use_inotify = use_inotify
        self._lock = threading.Lock()
        self._events_lock = threading.Lock()  # who reads inotify events processes them before anyone else reads
        self._containers: dict[str, LogDir] = {}
        self._by_wd: dict[int, LogDir] = {}
        self._polled: set[str] = set()  # watched directories without an inotify watch
        self._inotify: inotify.Inotify | None = None
        self._inotify_tried = False
        self._wake_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._counter = 0
        self._seq: dict[str, int] = {}
        self._waiters: dict[str, list] = {}  # path -> [Condition, number of waiters]
        self._stats = {"events": 0, "batches": 0, "overflows": 0}

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
            self._writer.close_all()
            self._thread = None

    @property
    def stats(self) -> dict[str, int]:
        """Counters since construction: inotify events, batches, overflows; records, resets."""
        return {**self._stats, **self._writer.stats}

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
            container = LogDir(path, self._keep_open)
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
            self._writer.forget(path)
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
                container = LogDir(path, self._keep_open)
            container.rotate(self._writer, live=live)
            self._changed(path)

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
                container = LogDir(path, self._keep_open)
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

    def _changed(self, path: str) -> None:
        self._counter += 1
        self._seq[path] = self._counter
        entry = self._waiters.get(path)
        if entry is not None:
            entry[0].notify_all()
        if path not in self._containers and entry is None:
            self._seq.pop(path, None)  # nobody can hold an older token that a missing entry would not satisfy

    def _update_all(self, container: LogDir, *, live: bool) -> bool:
        return container.update_all(self._writer, live=live)

    def _update(self, container: LogDir, name: str, *, live: bool) -> bool:
        return container.update(self._writer, name, live=live)

    def _keep_open(self, container: LogDir) -> bool:
        """An index stays open between appends only in a directory watched through inotify, where
        we hear when someone else deletes or replaces it."""
        return self._containers.get(container.path) is container and container.wd is not None

    def _ensure_inotify(self) -> None:
        if self._inotify_tried:
            return
        self._inotify_tried = True
        if not self._use_inotify:
            return
        try:
            self._inotify = inotify.Inotify()
        except (OSError, AttributeError) as e:
            log.warning("inotify unavailable (%s): polling log files every %.1fs", e, self._poll_interval)

    def _add_watch(self, container: LogDir) -> None:
        if self._inotify is None:
            return
        try:
            wd = self._inotify.add_watch(container.path, inotify.DIR_MASK)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                log.warning("inotify watch limit reached (max_user_watches=%s): polling %s",
                            inotify.watch_limit(), container.path)
                return
            raise
        other = self._by_wd.get(wd)
        if other is not None and other is not container:  # the same directory under another spelling
            container.streams = other.streams
        container.wd = wd
        self._by_wd[wd] = container
        self._polled.discard(container.path)

    def _drop_watch(self, container: LogDir) -> None:
        self._writer.forget(container.path)
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
            chunks = self._inotify.read()
            if chunks:
                self._process_events(chunks)

    def _process_events(self, chunks: list[bytes]) -> None:
        batch = inotify.parse(chunks, _TRACKED_B, _INDEX_B)
        touched, first_data, count = batch.touched, batch.first_data, batch.count
        with self._lock:
            self._stats["events"] += count
            self._stats["batches"] += 1
            notify = set()
            for wd, raw in batch.replaced:  # someone else deleted or replaced one of our indexes
                container = self._by_wd.get(wd)
                if container is not None:
                    self._writer.forget(container.path, (_INDEX_B[raw],))
            if batch.overflow:
                self._stats["overflows"] += 1
                for container in self._containers.values():
                    if container.wd is not None and self._update_all(container, live=True):
                        notify.add(container.path)
            # files are stamped in the order their first new bytes arrived (each stamp later than the last):
            # a stream written first sorts first even when the other's bytes are found in the same batch
            for (wd, raw) in sorted(touched, key=lambda key: first_data.get(key, count)):
                mask = touched[(wd, raw)]
                container = self._by_wd.get(wd)
                if container is None:
                    continue
                name = raw.decode()
                if mask & inotify.IN_CREATE:  # a new file, even if it got the old one's inode number back
                    stream = container.streams[name]
                    stream.loaded, stream.ino, stream.end, stream.last_t = True, None, 0, 0
                elif mask & inotify.REPLACED:
                    container.streams[name].loaded = False
                # bytes in a file with no IN_MODIFY in this batch are read when their IN_MODIFY comes (it
                # follows every write): read now, they would be stamped before other files' older bytes
                if mask & _READ_NOW and self._update(container, name, live=True):
                    notify.add(container.path)
                if mask & (inotify.IN_CLOSE_WRITE | inotify.REPLACED):
                    notify.add(container.path)
            for wd in batch.gone:
                container = self._by_wd.pop(wd, None)
                if container is not None:  # the directory was removed (pod deleted) or moved away
                    self._inotify.rm_watch(wd)  # a moved directory keeps its watch otherwise
                    container.wd = None
                    self._writer.forget(container.path)
                    if self._containers.get(container.path) is container:
                        del self._containers[container.path]
                        self._polled.discard(container.path)
                    notify.add(container.path)
            for path in notify:
                self._changed(path)
