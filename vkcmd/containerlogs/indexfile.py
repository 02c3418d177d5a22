"""The on-disk index of a container's stream files: its format, its writer and its reader.

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

Writes go through ``safefs`` relative to the directory's fd (``O_EXCL|O_NOFOLLOW``, renames): a link
a container planted at an index name is replaced, never followed. Knows nothing of inotify or
threads: :mod:`vkcmd.containerlogs.indexer` decides when, :mod:`vkcmd.containerlogs.reader` reads.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import struct
from collections import OrderedDict
from collections.abc import Callable

from vkcmd.runtime import safefs

log = logging.getLogger("vkcmd.containerlogs")

STREAMS = ("stdout", "stderr")
PREVIOUS = ".previous"
TRACKED = STREAMS + tuple(name + PREVIOUS for name in STREAMS)
MAGIC = b"VKLOGIX1"
HEADER = struct.Struct("<8sQ")
RECORD = struct.Struct("<QQ")
NO_TIME = 0
_FD_CACHE = 256  # index files kept open for appending (the busiest ones), so an append is one write()


def index_name(log_name: str) -> str:
    """The hidden index file of a stream file: ``stdout`` -> ``.stdout.idx``."""
    return f".{log_name}.idx"


class StreamIndex:
    """What the index of one stream file says: the inode it describes, how far it goes, its last time."""

    __slots__ = ("loaded", "ino", "end", "last_t")

    def __init__(self) -> None:
        self.loaded = False  # False: read the on-disk index before using end/last_t
        self.ino: int | None = None
        self.end = 0
        self.last_t = 0


# --- writing -------------------------------------------------------------------------------

def open_nofollow(dfd: int, name: str, flags: int, mode: int = 0o600) -> int:
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)


def load(dfd: int, name: str, stream: StreamIndex, ino: int) -> None:
    """Read the on-disk index of ``name``: where it ends and its last time, if it describes inode ``ino``."""
    stream.loaded, stream.ino, stream.end, stream.last_t = True, None, 0, 0
    try:
        fd = open_nofollow(dfd, index_name(name), os.O_RDONLY | os.O_NONBLOCK)
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
            cut(dfd, name, count)
    finally:
        os.close(fd)


def cut(dfd: int, name: str, count: int) -> None:
    try:
        fd = open_nofollow(dfd, index_name(name), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.ftruncate(fd, HEADER.size + count * RECORD.size)
    finally:
        os.close(fd)


def create(dfd: int, name: str, content: bytes) -> bool:
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


def rewrite(dfd: int, name: str, ino: int, records: list[tuple[int, int]]) -> None:
    """Write a fresh index of ``name``: created when there is none, else replaced by a rename.

    Replacing by rename leaves a reader that holds the old index with a
    consistent (old) view; a planted symlink is replaced, never followed.
    """
    final = index_name(name)
    content = HEADER.pack(MAGIC, ino) + b"".join(RECORD.pack(*r) for r in records)
    if create(dfd, final, content):
        return
    temp = safefs.temp_name(final)
    if not create(dfd, temp, content):
        raise FileExistsError(errno.EEXIST, "index being replaced by someone else", temp)
    safefs.rename_over(dfd, temp, final)


_SETTLE_PASSES = 4


class IndexWriter:
    """Brings indexes up to their stream files' sizes, and keeps the busiest open for appending.

    Not thread-safe: its owner (the indexer) serialises calls. ``stats`` counts records written and
    indexes reset. ``clock_ns`` stamps live appends (never decreasing).
    """

    def __init__(self, clock_ns: Callable[[], int]) -> None:
        self._clock_ns = clock_ns
        self._last_now = 0
        self._fds: OrderedDict[tuple[str, str], int] = OrderedDict()  # (directory, name) -> open index
        self.stats = {"records": 0, "resets": 0}

    def now(self) -> int:
        now = max(self._clock_ns(), self._last_now)
        self._last_now = now
        return now

    def stat(self, dfd: int, name: str, stream: StreamIndex) -> os.stat_result | None:
        """The stream file's stat (None when absent or not a regular file), its on-disk index loaded."""
        try:
            info = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            stream.loaded, stream.ino, stream.end, stream.last_t = True, None, 0, 0
            return None
        if not stat.S_ISREG(info.st_mode):  # a symlink or anything else is never indexed (nor read)
            return None
        if not stream.loaded:
            load(dfd, name, stream, info.st_ino)
        return info

    def settled(self, dfd: int, streams: dict[str, StreamIndex], names: tuple[str, ...]) -> dict[str, os.stat_result | None]:
        """The stat of each of ``names`` at one instant: passes are repeated until two agree (no file
        changed between them), so a file written after another is never seen grown while the other is
        seen not yet written. A container writing without pause gets the last pass after a few tries."""
        last = None
        for _ in range(_SETTLE_PASSES):
            infos = {name: self.stat(dfd, name, streams[name]) for name in names}
            sizes = {name: (info.st_ino, info.st_size) if info else None for name, info in infos.items()}
            if sizes == last:
                break
            last = sizes
        return infos

    def update(self, dfd: int, directory: str, name: str, stream: StreamIndex, *, live: bool, floor: int,
               keep_open: bool, info: os.stat_result | None | bool = True) -> bool:
        """Bring the index of ``name`` up to the file's size; True when a record was written.
        ``keep_open``: the index may stay open for the next append (someone hears of its removal).
        ``info``: the file's stat already taken (see ``settled``), or True to take it now."""
        if info is True:
            info = self.stat(dfd, name, stream)
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
                self.forget(directory, (name,))
                rewrite(dfd, name, info.st_ino, records)
            elif info.st_size > stream.end:
                self._append(dfd, directory, name, stream, info.st_size, self._stamp(stream, info, live, floor),
                             keep_open)
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

    def _append(self, dfd: int, directory: str, name: str, stream: StreamIndex, end: int, when: int,
                cache: bool) -> None:
        """Add one record; an index that vanished or became a symlink (or anything else) is rewritten."""
        key = (directory, name)
        fd = self._fds.get(key)
        if fd is not None:
            self._fds.move_to_end(key)
        else:
            try:
                fd = open_nofollow(dfd, index_name(name), os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ELOOP, errno.EISDIR, errno.ENXIO):
                    raise
                rewrite(dfd, name, stream.ino or 0, [(end, when)])
                return
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO with a reader, a device
                os.close(fd)
                rewrite(dfd, name, stream.ino or 0, [(end, when)])
                return
            if cache:
                self._fds[key] = fd
                if len(self._fds) > _FD_CACHE:
                    os.close(self._fds.popitem(last=False)[1])
        try:
            os.write(fd, RECORD.pack(end, when))
        except OSError:
            self.forget(directory, (name,))
            raise
        finally:
            if not cache and self._fds.get(key) != fd:
                os.close(fd)

    def forget(self, directory: str, names: tuple[str, ...] = TRACKED) -> None:
        """Close the indexes of ``directory`` kept open."""
        for name in names:
            fd = self._fds.pop((directory, name), None)
            if fd is not None:
                os.close(fd)

    def close_all(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])

    def _stamp(self, stream: StreamIndex, info: os.stat_result, live: bool, floor: int) -> int:
        if live:
            when = self.now()
        else:  # mtime comes from the kernel's coarse clock: it may lag a fine-clock stamp by a tick
            when = min(max(info.st_mtime_ns, floor), self._clock_ns())
        when = max(when, stream.last_t)
        stream.last_t = when
        return when


# --- reading -------------------------------------------------------------------------------

def open_index(dfd: int, log_name: str, ino: int) -> int | None:
    """An fd of the index of ``log_name`` when it is a regular file describing inode ``ino``."""
    fd = None
    try:
        fd = open_nofollow(dfd, index_name(log_name), os.O_RDONLY | os.O_NONBLOCK)
        info = os.fstat(fd)
        header = os.pread(fd, HEADER.size, 0)
        if stat.S_ISREG(info.st_mode) and len(header) == HEADER.size and HEADER.unpack(header) == (MAGIC, ino):
            return fd
    except OSError:
        pass
    if fd is not None:
        os.close(fd)
    return None


class Timeline:
    """Records ``(end, time_ns)`` of one stream file: from its index, then any the reader stamps itself.

    The index is read with ``pread`` (a bisection touches log(n) records; a
    walk reads blocks), so a long-lived container's large index is never
    loaded whole. When the index does not cover bytes the reader must show
    (no indexer, or an indexer that could not write), the reader stamps them
    with the file's mtime and from then on uses its own records past that point.
    """

    _BLOCK_RECORDS = 4096

    def __init__(self, fd: int | None) -> None:
        self._fd = fd  # the index file, None when there is none (or it describes another file)
        self._count = 0  # records usable from the index
        self._frozen = False  # True once the reader stamps records itself: the index is read no further
        self._extra: list[tuple[int, int]] = []
        self._block_no = -1
        self._block = b""
        self.refresh()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def refresh(self) -> None:
        if self._fd is not None and not self._frozen:
            size = os.fstat(self._fd).st_size
            self._count = max(0, (size - HEADER.size) // RECORD.size)

    def __len__(self) -> int:
        return self._count + len(self._extra)

    def get(self, i: int) -> tuple[int, int]:
        if i >= self._count:
            return self._extra[i - self._count]
        block_no = i // self._BLOCK_RECORDS
        within = (i % self._BLOCK_RECORDS) * RECORD.size
        if block_no != self._block_no or within + RECORD.size > len(self._block):
            start = HEADER.size + block_no * self._BLOCK_RECORDS * RECORD.size
            self._block = os.pread(self._fd, self._BLOCK_RECORDS * RECORD.size, start)
            self._block_no = block_no
            if within + RECORD.size > len(self._block):  # the index shrank under us (it was reset)
                return self._extra[-1] if self._extra else (0, NO_TIME)
        return RECORD.unpack_from(self._block, within)

    def _probe(self, i: int) -> tuple[int, int]:
        if i >= self._count:
            return self._extra[i - self._count]
        raw = os.pread(self._fd, RECORD.size, HEADER.size + i * RECORD.size)
        return RECORD.unpack(raw) if len(raw) == RECORD.size else (0, NO_TIME)

    def covered(self) -> int:
        return self.get(len(self) - 1)[0] if len(self) else 0

    def last_time(self) -> int:
        return self.get(len(self) - 1)[1] if len(self) else NO_TIME

    def bisect_end(self, offset: int) -> int:
        """The first record whose end is past ``offset`` (the one covering byte ``offset``)."""
        lo, hi = 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._probe(mid)[0] <= offset:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def bisect_time(self, when: int) -> int:
        """The first record stamped at or after ``when``."""
        lo, hi = 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._probe(mid)[1] < when:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def stamp(self, end: int, when: int) -> None:
        """The reader's own record: bytes up to ``end`` seen by ``when`` (never earlier than the last)."""
        self._frozen = True
        self._extra.append((end, max(when, self.last_time())))
