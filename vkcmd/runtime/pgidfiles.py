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
        self._wd: dict[str, int] = {}               # run id -> the watch on its directory
        self._runs: dict[int, set[str]] = {}        # watch -> the runs in that directory (one, mostly)
        self._seen: Mapping[str, str] | None = None  # the mapping of the last call (the scanner reuses it)

    @property
    def watches(self) -> int:
        return len(self._runs)

    def changed(self, live: Mapping[str, str]) -> set[str]:
        """Of ``live`` (run id -> container directory), the runs whose file may have changed since
        the last call (all of them without inotify). Work per call: the runs that came or went, and
        the events - none per run that stayed."""
        if not self._started:
            self._started = True
            try:
                self._inotify = Inotify()
            except OSError:
                self._inotify = None
        if self._inotify is None:
            return set(live)
        touched, overflow = self._events()
        if overflow:
            return set(live)
        if live is self._seen and len(self._wd) == len(live):   # the same runs, all watched: events only
            return {run_id for wd in touched for run_id in self._runs.get(wd, ())}
        self._seen = live
        for run_id in self._wd.keys() - live.keys():          # ended: drop its watch (the last run's)
            self._forget(run_id)
        unwatched = live.keys() - self._wd.keys()             # new here (or not watchable): read them
        for run_id in unwatched:
            try:
                wd = self._inotify.add_watch(live[run_id], MASK)
            except OSError:
                continue                                      # read at every call instead
            self._wd[run_id] = wd
            self._runs.setdefault(wd, set()).add(run_id)
        for wd in touched:
            unwatched.update(self._runs.get(wd, ()))
        return unwatched

    def _forget(self, run_id: str) -> None:
        wd = self._wd.pop(run_id)
        runs = self._runs.get(wd)
        if runs is not None:
            runs.discard(run_id)
            if not runs:
                del self._runs[wd]
                self._inotify.rm_watch(wd)

    def _events(self) -> tuple[set[int], bool]:
        """Watches with an event on the file since the last read; whether events were lost. A watch
        whose directory went is dropped (its runs are then watched again, or read, at the next call)."""
        touched: set[int] = set()
        overflow = False
        for data in self._inotify.read():
            offset, size = 0, len(data)
            while offset < size:
                wd, mask, _cookie, length = EVENT.unpack_from(data, offset)
                start = offset + EVENT.size
                offset = start + length
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                elif mask & _GONE and not length:
                    touched.add(wd)
                    if mask & IN_IGNORED:
                        for run_id in self._runs.pop(wd, ()):
                            self._wd.pop(run_id, None)
                elif data[start:offset].rstrip(b"\0") == self._name:
                    touched.add(wd)
        return touched, overflow

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._wd.clear()
        self._runs.clear()
