"""Container logs as ``kubectl logs`` shows them: stdout and stderr merged by arrival time.

Reads a container's stream files and the arrival-time indexes that
:mod:`vkcmd.runtime.logindex` keeps beside them, and applies the kubelet's
options the way its CRI log reader does: ``tailLines`` counts merged lines and
is applied first, then ``since`` (lines that arrived before it are dropped),
``limitBytes`` cuts the output (mid-line, timestamp prefixes included),
``timestamps`` prefixes each line with ``2006-01-02T15:04:05.000000000Z ``.
Knows nothing of HTTP; it yields bytes for the kubelet API to send.

Partial lines: like containerd, a line is shown once complete; the last line
of a run that ended without a newline is shown as is (no newline added).
Only names inside the container directory are opened, never through a symlink.
"""

from __future__ import annotations

import errno
import heapq
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vkcmd.runtime import safefs
from vkcmd.runtime.logindex import HEADER, MAGIC, PREVIOUS, RECORD, STREAMS, LogIndexer, index_name

_BLOCK = 256 * 1024  # bytes read at a time
_CHUNK = 64 * 1024  # bytes gathered before a chunk is yielded
_MAX_PIECE = 1024 * 1024  # a longer line is emitted in pieces, so memory stays bounded
_NO_TIME = 0


@dataclass(frozen=True)
class LogOptions:
    """What ``kubectl logs`` asks for. ``None`` means "not limited"."""

    follow: bool = False  # keep streaming until the run has ended and its output is drained
    tail_lines: int | None = None  # the last N lines of stdout and stderr merged (0: none)
    timestamps: bool = False  # prefix each line with its arrival time, RFC 3339 with 9 fractional digits
    since_time_ns: int | None = None  # only lines that arrived at or after this Unix time (ns)
    limit_bytes: int | None = None  # stop after this many bytes of output (a line may be cut)
    previous: bool = False  # the run before the last restart

    def __post_init__(self) -> None:
        if self.tail_lines is not None and self.tail_lines < 0:
            raise ValueError(f"tail_lines must be >= 0, not {self.tail_lines}")
        if self.limit_bytes is not None and self.limit_bytes < 0:
            raise ValueError(f"limit_bytes must be >= 0, not {self.limit_bytes}")


class LogsUnavailable(Exception):
    """The container has no logs to read (it never ran, or its files are not regular files)."""

    def __init__(self, message: str, *, pod: str, container: str) -> None:
        super().__init__(message)
        self.message = message
        self.pod = pod
        self.container = container


class PreviousNotFound(LogsUnavailable):
    """``previous`` asked, and no run before the current one is kept (the kubelet's message)."""


def format_timestamp(time_ns: int) -> bytes:
    """``2026-11-26T23:40:01.123456789Z `` -- the kubelet's fixed-width RFC 3339 form and one space."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + b".%09dZ " % nanos


def _names(container_dir: str) -> tuple[str, str]:
    """(pod, container) from ``<root>/<namespace>/<pod>/containers/<container>``, for messages."""
    path = os.path.abspath(container_dir)
    container = os.path.basename(path)
    parent = os.path.dirname(path)
    pod = os.path.basename(os.path.dirname(parent)) if os.path.basename(parent) == "containers" else ""
    return pod, container


# --- the arrival times of one stream file ------------------------------------------------------------

class _Timeline:
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
                return self._extra[-1] if self._extra else (0, _NO_TIME)
        return RECORD.unpack_from(self._block, within)

    def _probe(self, i: int) -> tuple[int, int]:
        if i >= self._count:
            return self._extra[i - self._count]
        raw = os.pread(self._fd, RECORD.size, HEADER.size + i * RECORD.size)
        return RECORD.unpack(raw) if len(raw) == RECORD.size else (0, _NO_TIME)

    def covered(self) -> int:
        return self.get(len(self) - 1)[0] if len(self) else 0

    def last_time(self) -> int:
        return self.get(len(self) - 1)[1] if len(self) else _NO_TIME

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


# --- one stream file ---------------------------------------------------------------------------------

class _Source:
    """One stream file being read: its fd, its timeline, and the next line to emit."""

    def __init__(self, dfd: int, name: str) -> None:
        self.name = name
        self.fd: int | None = None
        self.ino = 0
        self.timeline = _Timeline(None)
        self.pos = 0  # next byte to emit; always the start of a line, or inside a long line being pieced out
        self.at_line_start = True
        self.limit = 0  # bytes stamped and safe to read
        self._cursor = 0  # timeline record covering self.pos
        self._line_time = _NO_TIME  # arrival time of the line being emitted
        self._no_newline = (0, 0)  # (pos, end): no newline in [pos, end)
        self._dfd = dfd

    def open(self) -> bool:
        """Open the file (False when it does not exist); a symlink or non-regular file is refused."""
        try:
            fd = os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self._dfd)
        except FileNotFoundError:
            return False
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _Refused(f"{self.name} is a symbolic link") from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise _Refused(f"{self.name} is not a regular file")
        self.fd, self.ino = fd, info.st_ino
        self._open_index()
        return True

    def _open_index(self) -> None:
        self.timeline.close()
        fd = None
        try:
            fd = os.open(index_name(self.name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=self._dfd)
            info = os.fstat(fd)
            header = os.pread(fd, HEADER.size, 0)
            valid = len(header) == HEADER.size and HEADER.unpack(header) == (MAGIC, self.ino)
            if not stat.S_ISREG(info.st_mode) or not valid:
                os.close(fd)
                fd = None
        except OSError:
            if fd is not None:
                os.close(fd)
            fd = None
        self.timeline = _Timeline(fd)
        self._cursor = 0

    def close(self) -> None:
        self.timeline.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def size(self) -> int:
        return os.fstat(self.fd).st_size if self.fd is not None else 0

    def replaced(self) -> bool:
        """True when the name now means another file, or none (the run was rotated away or deleted)."""
        if self.fd is None:
            return False
        try:
            return os.stat(self.name, dir_fd=self._dfd, follow_symlinks=False).st_ino != self.ino
        except FileNotFoundError:
            return True

    def refresh(self, must_cover: int, clock_ns: Callable[[], int]) -> None:
        """Learn how far the file is stamped; stamp ``[covered, must_cover)`` ourselves if nobody did."""
        if self.fd is None:
            return
        info = os.fstat(self.fd)
        if info.st_size < self.pos:  # truncated: start again from the top, with the new index
            self.pos, self.at_line_start, self._no_newline = 0, True, (0, 0)
            self._open_index()
        self.timeline.refresh()
        if self.timeline.covered() < min(must_cover, info.st_size):
            self.timeline.stamp(info.st_size, min(info.st_mtime_ns, clock_ns()))
        self.limit = min(self.timeline.covered(), info.st_size)

    def emit_end(self, ended: bool) -> int:
        """Where output may stop now: the limit when the run ended, else after the last complete line."""
        if ended or self.limit <= self.pos:
            return max(self.limit, self.pos)
        lo = self._no_newline[1] if self._no_newline[0] == self.pos else self.pos
        hi = self.limit
        while hi > lo:
            start = max(lo, hi - _BLOCK)
            k = os.pread(self.fd, hi - start, start).rfind(b"\n")
            if k >= 0:
                return start + k + 1
            hi = start
        self._no_newline = (self.pos, self.limit)
        return self.pos

    def tail_start(self, lines: int, end: int) -> tuple[int, int]:
        """(offset, count): where the last ``lines`` lines before ``end`` begin, and how many there are."""
        if lines == 0 or end <= self.pos:
            return end, 0
        hi = end - 1 if os.pread(self.fd, 1, end - 1) == b"\n" else end
        found = 0
        while hi > self.pos:
            lo = max(self.pos, hi - _BLOCK)
            data = os.pread(self.fd, hi - lo, lo)
            count = data.count(b"\n")
            if found + count < lines:
                found += count
                hi = lo
                continue
            right = len(data)
            while True:
                right = data.rfind(b"\n", 0, right)
                found += 1
                if found == lines:
                    return lo + right + 1, lines
        return self.pos, found + 1

    def line_start_at_or_after(self, offset: int, end: int) -> int:
        """The first line start at or after ``offset`` (``end`` when the line there runs past it)."""
        if offset <= 0:
            return 0
        if os.pread(self.fd, 1, offset - 1) == b"\n":
            return offset
        while offset < end:
            data = os.pread(self.fd, min(_BLOCK, end - offset), offset)
            if not data:
                break
            k = data.find(b"\n")
            if k >= 0:
                return offset + k + 1
            offset += len(data)
        return end

    def seek(self, offset: int) -> None:
        self.pos = offset
        self.at_line_start = True
        self._cursor = self.timeline.bisect_end(offset)

    def _time_at(self, offset: int) -> tuple[int, int]:
        """(time, end) of the record covering byte ``offset``."""
        timeline, i = self.timeline, self._cursor
        n = len(timeline)
        while i < n:
            end, when = timeline.get(i)
            if end > offset:
                self._cursor = i
                return when, end
            i += 1
        self._cursor = i
        return (timeline.last_time(), 1 << 63)

    def runs(self, end: int) -> Iterator[tuple[int, bytes, bool]]:
        """``(time, bytes, starts_a_line)`` for the output in ``[pos, end)``: lines sharing one arrival time.

        ``end`` is a line boundary or the end of an ended run. Lines longer
        than ``_MAX_PIECE`` come in pieces (the later ones not starting a line).
        """
        while self.pos < end:
            data = os.pread(self.fd, min(_BLOCK, end - self.pos), self.pos)
            if not data:
                return
            if self.pos + len(data) < end:
                k = data.rfind(b"\n")
                if k >= 0:
                    data = data[:k + 1]
                else:
                    data = self._piece(data, end)
            base, size, offset = self.pos, len(data), 0
            while offset < size:
                start_of_line = self.at_line_start if offset == 0 else True
                if start_of_line:
                    when, record_end = self._time_at(base + offset)
                    self._line_time = when
                    cut = size
                    if record_end < base + size:
                        k = data.find(b"\n", record_end - 1 - base)
                        if k >= 0:
                            cut = k + 1
                else:  # the rest of a long line: its time is that of its first byte
                    when = self._line_time
                    k = data.find(b"\n")
                    cut = size if k < 0 else k + 1
                piece = data[offset:cut]
                offset = cut
                self.pos = base + cut
                self.at_line_start = piece.endswith(b"\n")
                yield when, piece, start_of_line

    def _piece(self, data: bytes, end: int) -> bytes:
        """A line longer than a block: read on to its end, or ``_MAX_PIECE`` bytes of it."""
        chunks, total = [data], len(data)
        while self.pos + total < end and total < _MAX_PIECE:
            more = os.pread(self.fd, min(_BLOCK, end - self.pos - total, _MAX_PIECE - total), self.pos + total)
            if not more:
                break
            k = more.find(b"\n")
            if k >= 0:
                chunks.append(more[:k + 1])
                break
            chunks.append(more)
            total += len(more)
        return b"".join(chunks)


class _Refused(Exception):
    pass


# --- the stream -----------------------------------------------------------------------------------

def stream_logs(container_dir: str, options: LogOptions, *, is_running: Callable[[], bool],
                indexer: LogIndexer | None, stop: threading.Event | None = None,
                poll_interval: float = 0.5) -> LogStream:
    """The container's output as chunks ready to send (whole lines, prefixed when asked).

    Raises at once (not on first iteration) :class:`PreviousNotFound` when
    ``options.previous`` and no previous run is kept, and
    :class:`LogsUnavailable` when the container has no log files (it never
    ran) or they are not regular files. ``is_running`` says whether the run
    being read is still running; with ``follow``, the stream ends once it
    returns False and the output is drained, when the files are rotated away
    or deleted, when ``limit_bytes`` is reached, or when ``stop`` is set
    (checked at least every ``poll_interval`` seconds, which also bounds how
    late the end of a run is noticed when nobody calls ``indexer.notify``).
    ``indexer`` (may be None) is flushed before each read and waited on for
    new output. Close the returned stream (or exhaust it) to release its files.
    """
    pod, container = _names(container_dir)
    try:
        dfd = safefs.open_dir(container_dir)
    except OSError as err:  # absent, not a directory, or reached through a symlink (ELOOP)
        if err.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise
        dfd = None
    if dfd is None:
        if options.previous:
            raise PreviousNotFound(f'previous terminated container "{container}" in pod "{pod}" not found',
                                   pod=pod, container=container)
        raise LogsUnavailable(f'container "{container}" in pod "{pod}" has no logs yet', pod=pod, container=container)
    suffix = PREVIOUS if options.previous else ""
    sources = [_Source(dfd, name + suffix) for name in STREAMS]
    try:
        if indexer is not None:
            indexer.flush(container_dir)
        opened = [source.open() for source in sources]
        if not any(opened):
            if options.previous:
                raise PreviousNotFound(f'previous terminated container "{container}" in pod "{pod}" not found',
                                       pod=pod, container=container)
            raise LogsUnavailable(f'container "{container}" in pod "{pod}" has no logs yet',
                                  pod=pod, container=container)
    except _Refused as e:
        for source in sources:
            source.close()
        os.close(dfd)
        raise LogsUnavailable(f'cannot read the logs of container "{container}" in pod "{pod}": {e}',
                              pod=pod, container=container) from None
    except BaseException:
        for source in sources:
            source.close()
        os.close(dfd)
        raise
    reader = _Reader(container_dir, dfd, sources, options, is_running, indexer, stop, poll_interval)
    return LogStream(reader)


class LogStream(Iterator[bytes]):
    """The iterator :func:`stream_logs` returns; ``close()`` (or a ``with`` block) releases its files."""

    def __init__(self, reader: _Reader) -> None:
        self._reader = reader
        self._chunks = reader.chunks()

    def __iter__(self) -> LogStream:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()
        self._reader.close()

    def __enter__(self) -> LogStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._reader.close()
        except Exception:
            pass


class _Reader:
    def __init__(self, container_dir: str, dfd: int, sources: list[_Source], options: LogOptions,
                 is_running: Callable[[], bool], indexer: LogIndexer | None, stop: threading.Event | None,
                 poll_interval: float) -> None:
        self._dir = container_dir
        self._dfd: int | None = dfd
        self._sources = sources
        self._options = options
        self._is_running = is_running
        self._indexer = indexer
        self._stop = stop
        self._poll_interval = poll_interval
        self._clock_ns = time.time_ns
        self._remain = options.limit_bytes
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for source in self._sources:
                source.close()
            if self._dfd is not None:
                os.close(self._dfd)
                self._dfd = None

    def _ended(self) -> bool:
        if self._options.previous:
            return True
        if any(source.replaced() for source in self._sources):
            return True
        return not self._is_running()

    def _prepare(self) -> bool:
        """Flush, learn how far each file is stamped; True when the run has ended (decided before the flush)."""
        ended = self._ended()
        sizes = [source.size() for source in self._sources]
        if self._indexer is not None:
            self._indexer.flush(self._dir)
        for source, size in zip(self._sources, sizes):
            if source.fd is None and not self._options.previous:
                try:
                    if source.open():  # a stream file that appeared since the start
                        size = source.size()
                except _Refused:
                    pass
            # with an indexer, what it did not cover was written after the flush: the next round shows it
            source.refresh(size if self._indexer is not None else 1 << 63, self._clock_ns)
        return ended

    def _start(self, ends: list[int]) -> int:
        """Position the sources for tail/since; returns how many merged lines to skip."""
        options = self._options
        if options.tail_lines is not None:
            total = 0
            for source, end in zip(self._sources, ends):
                if source.fd is None:
                    continue
                offset, count = source.tail_start(options.tail_lines, end)
                source.seek(offset)
                total += count
            return max(0, total - options.tail_lines)
        if options.since_time_ns is not None:
            for source, end in zip(self._sources, ends):
                if source.fd is None:
                    continue
                i = source.timeline.bisect_time(options.since_time_ns)
                if i >= len(source.timeline):
                    source.seek(end)
                elif i > 0:
                    source.seek(min(end, source.line_start_at_or_after(source.timeline.get(i - 1)[0], end)))
        return 0

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self._chunks()
        finally:
            self.close()

    def _chunks(self) -> Iterator[bytes]:
        options = self._options
        if self._remain == 0:
            return
        token = self._indexer.changes(self._dir) if self._indexer is not None else 0
        ended = self._prepare()
        ends = [source.emit_end(ended) for source in self._sources]
        skip = self._start(ends)
        since = options.since_time_ns
        skipping_line = False
        prefix_cache: dict[int, bytes] = {}
        while True:
            out: list[bytes] = []
            size = 0
            streams = [source.runs(end) for source, end in zip(self._sources, ends) if source.fd is not None]
            for when, data, starts in heapq.merge(*streams, key=lambda run: run[0]):
                if skip or skipping_line:
                    data, starts, skip, skipping_line = _skip_lines(data, starts, skip, skipping_line)
                    if not data:
                        continue
                if since is not None and when < since:
                    continue
                if options.timestamps:
                    prefix = prefix_cache.get(when)
                    if prefix is None:
                        if len(prefix_cache) > 1024:
                            prefix_cache.clear()
                        prefix = prefix_cache[when] = format_timestamp(when)
                    data = _prefixed(data, starts, prefix)
                if self._remain is not None:
                    if len(data) >= self._remain:
                        out.append(data[:self._remain])
                        self._remain = 0
                        yield b"".join(out)
                        return
                    self._remain -= len(data)
                out.append(data)
                size += len(data)
                if size >= _CHUNK:
                    yield b"".join(out)
                    out, size = [], 0
            if out:
                yield b"".join(out)
            if not options.follow or ended:
                return
            while True:
                if self._stop is not None and self._stop.is_set():
                    return
                if self._indexer is not None:
                    token = self._indexer.wait_for_change(self._dir, token, self._poll_interval)
                elif self._stop is not None:
                    self._stop.wait(self._poll_interval)
                else:
                    time.sleep(self._poll_interval)
                if self._stop is not None and self._stop.is_set():
                    return
                ended = self._prepare()
                ends = [source.emit_end(ended) for source in self._sources]
                if ended or any(end > source.pos for source, end in zip(self._sources, ends)):
                    break


def _skip_lines(data: bytes, starts: bool, skip: int, skipping_line: bool) -> tuple[bytes, bool, int, bool]:
    """Drop the first ``skip`` line starts (and the rest of a line being dropped) from a run."""
    i = 0
    if not starts:
        if not skipping_line:
            return data, starts, skip, skipping_line
        k = data.find(b"\n")
        if k < 0:
            return b"", starts, skip, True
        i = k + 1
        skipping_line = False
    while skip and i < len(data):
        k = data.find(b"\n", i)
        skip -= 1
        if k < 0:
            return b"", starts, skip, True
        i = k + 1
    return data[i:], True, skip, False


def _prefixed(data: bytes, starts: bool, prefix: bytes) -> bytes:
    head = prefix if starts else b""
    if data.endswith(b"\n"):
        return head + data[:-1].replace(b"\n", b"\n" + prefix) + b"\n"
    return head + data.replace(b"\n", b"\n" + prefix)
