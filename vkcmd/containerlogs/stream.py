"""One stream file of a container being read: its fd, its arrival-time index, the next line to emit.

Opens only names inside the container directory's fd, never through a symlink, never a file that is
not regular (``Refused``). Turns bytes and index records into runs of lines that share one arrival
time; merging the streams and the kubelet's options are :mod:`vkcmd.containerlogs.reader`'s.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator

from vkcmd.containerlogs.indexfile import NO_TIME, Timeline, open_index

_BLOCK = 256 * 1024  # bytes read at a time
_MAX_PIECE = 1024 * 1024  # a longer line is emitted in pieces, so memory stays bounded


class Refused(Exception):
    """The stream file is a symbolic link or not a regular file: never read."""


class Source:
    """One stream file being read: its fd, its timeline, and the next line to emit."""

    def __init__(self, dfd: int, name: str) -> None:
        self.name = name
        self.fd: int | None = None
        self.ino = 0
        self.timeline = Timeline(None)
        self.pos = 0  # next byte to emit; always the start of a line, or inside a long line being pieced out
        self.at_line_start = True
        self.limit = 0  # bytes stamped and safe to read
        self._cursor = 0  # timeline record covering self.pos
        self._line_time = NO_TIME  # arrival time of the line being emitted
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
                raise Refused(f"{self.name} is a symbolic link") from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise Refused(f"{self.name} is not a regular file")
        self.fd, self.ino = fd, info.st_ino
        self._open_index()
        return True

    def _open_index(self) -> None:
        self.timeline.close()
        self.timeline = Timeline(open_index(self._dfd, self.name, self.ino))
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
