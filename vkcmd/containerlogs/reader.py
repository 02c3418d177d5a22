"""Container logs as ``kubectl logs`` shows them: stdout and stderr merged by arrival time.

Reads a container's stream files and the arrival-time indexes that
:mod:`vkcmd.containerlogs.indexer` keeps beside them, and applies the kubelet's
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
from vkcmd.containerlogs.indexer import LogIndexer
from vkcmd.containerlogs.indexfile import PREVIOUS, STREAMS
from vkcmd.containerlogs.stream import Refused, Source

_CHUNK = 64 * 1024  # bytes gathered before a chunk is yielded


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
    sources = [Source(dfd, name + suffix) for name in STREAMS]
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
    except Refused as e:
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
    def __init__(self, container_dir: str, dfd: int, sources: list[Source], options: LogOptions,
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
                except Refused:
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
