"""Which runs' pgid files may have changed: one inotify watch per running container's directory.

The scanner re-reads a run's ``pgid`` file only when this says so: when the run is new here, when
the file was written and closed, created, moved or deleted, when the kernel dropped events, and at
every look for a directory it could not watch (no inotify, or no watch left). So following rewritten
pgid files costs per rewrite, not per pod and scan. Knows runs only as ids with a directory.
"""

from __future__ import annotations

from collections.abc import Mapping

from vkcmd.runtime.inotify import (EVENT, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_IGNORED,
                                   IN_MOVE_SELF, IN_MOVED_FROM, IN_MOVED_TO, IN_ONLYDIR, IN_Q_OVERFLOW, Inotify)

IN_DONT_FOLLOW = 0x02000000
#: A write is seen when its writer closes the file (``echo N > pgid``) or renames it into place.
MASK = (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
        | IN_ONLYDIR | IN_DONT_FOLLOW)
_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED


class PgidFiles:
    """Change notices for the files called ``name`` in the directories of the live runs. One thread
    only (the scanner's); ``close`` at the end."""

    def __init__(self, name: str = "pgid") -> None:
        self._name = name.encode()
        self._inotify: Inotify | None = None     # made at the first call (constructing has no side effect)
        self._started = False
        self._wd: dict[str, int] = {}       # directory -> its watch
        self._dir: dict[int, str] = {}      # watch -> directory

    @property
    def watches(self) -> int:
        return len(self._wd)

    def changed(self, live: Mapping[str, str]) -> set[str]:
        """Of ``live`` (run id -> container directory), the runs whose file may have changed since
        the last call (all of them without inotify)."""
        if not self._started:
            self._started = True
            try:
                self._inotify = Inotify()
            except OSError:
                self._inotify = None
        if self._inotify is None:
            return set(live)
        dirs: dict[str, list[str]] = {}
        for run_id, directory in live.items():
            dirs.setdefault(directory, []).append(run_id)
        touched, overflow = self._events()
        if overflow:
            touched = set(dirs)
        for directory in self._wd.keys() - dirs.keys():        # no live run there any more
            wd = self._wd.pop(directory)
            del self._dir[wd]
            self._inotify.rm_watch(wd)
        for directory in dirs.keys() - self._wd.keys():        # new here (or not watchable): read it
            touched.add(directory)
            try:
                wd = self._inotify.add_watch(directory, MASK)
            except OSError:
                continue                                       # read at every call instead
            self._wd[directory], self._dir[wd] = wd, directory
        return {run_id for directory in touched for run_id in dirs.get(directory, ())}

    def _events(self) -> tuple[set[str], bool]:
        """Directories with an event on the file since the last read; whether events were lost."""
        touched: set[str] = set()
        overflow = False
        for data in self._inotify.read():
            offset, size = 0, len(data)
            while offset < size:
                wd, mask, _cookie, length = EVENT.unpack_from(data, offset)
                start = offset + EVENT.size
                offset = start + length
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                    continue
                directory = self._dir.get(wd)
                if directory is None:
                    continue
                if mask & _GONE and not length:                # the directory itself went: watch again
                    touched.add(directory)
                    if mask & IN_IGNORED:
                        del self._dir[wd]
                        self._wd.pop(directory, None)
                elif data[start:offset].rstrip(b"\0") == self._name:
                    touched.add(directory)
        return touched, overflow

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._wd.clear()
        self._dir.clear()
