"""One container directory as the indexer sees it: its stream files' indexes, and their rotation.

Every file is reached relative to the directory's fd, opened through no symlink only while in use
(an fd kept open would hold back the kernel's IN_DELETE_SELF when the directory is removed). Knows
the file names and how to move them; when to do so is the indexer's business.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator

from vkcmd.containerlogs.indexfile import PREVIOUS, STREAMS, TRACKED, IndexWriter, StreamIndex, index_name
from vkcmd.runtime import safefs

log = logging.getLogger("vkcmd.containerlogs")


class LogDir:
    """One watched (or flushed) directory. ``wd``: its inotify watch, None when polled. ``keep_open``
    is asked of the owner: may this directory's indexes stay open between appends?"""
    __slots__ = ("path", "wd", "streams", "dfd", "keep_open")

    def __init__(self, path: str, keep_open: Callable[[LogDir], bool] = lambda d: False) -> None:
        self.path = path
        self.wd: int | None = None
        self.streams = {name: StreamIndex() for name in TRACKED}
        self.dfd = -1
        self.keep_open = keep_open

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

    def update(self, writer: IndexWriter, name: str, *, live: bool) -> bool:
        """Bring the index of one stream file up to the file's size; True when a record was written."""
        return self._in_dir(lambda: self._update_held(writer, name, live=live, floor=0))

    def update_all(self, writer: IndexWriter, *, live: bool) -> bool:
        """Every stream file's index; not ``live`` (catching up), what nobody indexed is stamped no
        earlier than everything indexed in this directory (it came after those)."""
        return self._in_dir(lambda: self._update_all_held(writer, live=live))

    def rotate(self, writer: IndexWriter, *, live: bool) -> None:
        """Index what is left, then move each stream file and its index to the ``.previous`` names
        (an empty previous one when the file is missing). Relative to the directory's fd: a link
        planted at any of the names is renamed or unlinked, never followed; a directory or other
        non-file in the way is moved aside (``safefs.displace``). OSError when it cannot be opened."""
        with self.held() as dfd:
            for name in STREAMS:
                self._update_held(writer, name, live=live, floor=0)
            writer.forget(self.path)
            for name in STREAMS:
                previous = name + PREVIOUS
                for old in (previous, index_name(previous)):
                    safefs.remove_file(dfd, old)
                try:
                    safefs.rename_over(dfd, name, previous)
                except FileNotFoundError:
                    os.close(safefs.create_exclusive(dfd, previous))
                    self.streams[previous] = StreamIndex()
                else:
                    try:
                        safefs.rename_over(dfd, index_name(name), index_name(previous))
                    except FileNotFoundError:
                        pass
                    self.streams[previous] = self.streams[name]
                fresh = StreamIndex()
                fresh.loaded = True  # the new run's file does not exist yet: nothing on disk to read
                self.streams[name] = fresh

    def _update_all_held(self, writer: IndexWriter, *, live: bool) -> bool:
        infos = writer.settled(self.dfd, self.streams, TRACKED)  # the sizes at one instant
        floor = 0 if live else max(stream.last_t for stream in self.streams.values())
        changed = False
        for name in TRACKED:
            changed |= self._update_held(writer, name, live=live, floor=floor, info=infos[name])
        return changed

    def _update_held(self, writer: IndexWriter, name: str, *, live: bool, floor: int,
                     info: os.stat_result | None | bool = True) -> bool:
        return writer.update(self.dfd, self.path, name, self.streams[name], live=live, floor=floor,
                             keep_open=self.keep_open(self), info=info)

    def _in_dir(self, update: Callable[[], bool]) -> bool:
        try:
            with self.held():
                return update()
        except (FileNotFoundError, NotADirectoryError):  # the directory is gone
            return False
        except OSError as e:
            log.warning("cannot index logs in %s: %s", self.path, e)
            return False
