"""The scanner's index of the runs: what each cycle needs of them, kept as runs change.

``RunTable`` notes every run whose scanned fields changed (``changed(run)``); ``RunIndex.update``
re-files only those runs, so a cycle costs what changed since the last one, not a pass over the
thousands of runs (a delete wave changes a few runs per cycle, for thousands of cycles). Internal
to ``vkcmd.runtime``; knows nothing of scanning.
"""

from __future__ import annotations

from vkcmd.runtime.process_run import Run, RunTable


class RunIndex:
    """(all under the table's lock) ``to_term``: runs with a SIGTERM to send; ``limited``: live
    memory-limited runs without a kill pending; ``ending``: runs being ended or waited for, and
    ended runs not yet seen gone or no longer current (their members are read, so that zombies
    count as gone); ``gone``: current ended runs nothing was left of at a scan (looked at again
    only when a periodic scan finds a process of theirs); ``live_dirs``: live run id -> container dir; ``sessions``:
    live session -> run id; ``groups``: named group -> run id; ``known``: every run id. The
    views a scan gets are copies, made again only after a change."""

    def __init__(self) -> None:
        self.to_term: dict[str, Run] = {}
        self.limited: set[str] = set()
        self.ending: set[str] = set()
        self.gone: set[str] = set()
        self.live_dirs: dict[str, str] = {}
        self.sessions: dict[int, str] = {}
        self.groups: dict[int, str] = {}
        self.known: set[str] = set()
        self._filed: dict[str, tuple[int | None, int | None]] = {}   # run id -> (its session, its group)
        self._views: tuple[dict[int, str], frozenset[str], dict[int, str]] | None = None

    def update(self, table: RunTable) -> bool:
        """Re-file the runs changed since the last update; True when any was."""
        dirty = table.take_dirty()
        if dirty is None:
            self.__init__()
            dirty = list(table.by_id)
        if not dirty:
            return False
        for run_id in dirty:
            self._drop(run_id)
            run = table.by_id.get(run_id)
            if run is not None:
                self._file(run)
        self._views = None
        return True

    def views(self) -> tuple[dict[int, str], frozenset[str], dict[int, str]]:
        """(sessions, known, groups) for a tracker scan: copies, the same ones until a change."""
        if self._views is None:
            self._views = (dict(self.sessions), frozenset(self.known), dict(self.groups))
        return self._views

    def _drop(self, run_id: str) -> None:
        self.known.discard(run_id)
        self.to_term.pop(run_id, None)
        self.limited.discard(run_id)
        self.ending.discard(run_id)
        self.gone.discard(run_id)
        self.live_dirs.pop(run_id, None)
        session, group = self._filed.pop(run_id, (None, None))
        if session is not None and self.sessions.get(session) == run_id:
            del self.sessions[session]
        if group is not None and self.groups.get(group) == run_id:
            del self.groups[group]

    def _file(self, r: Run) -> None:
        run_id = r.run_id
        self.known.add(run_id)
        if r.starting:
            return
        session = group = None
        if r.leader_alive:
            self.sessions[session := r.pid] = run_id
            if r.named_pgid is not None:
                self.groups[group := r.named_pgid] = run_id
            if r.record.container_dir:
                self.live_dirs[run_id] = r.record.container_dir
            if r.term_pending:
                self.to_term[run_id] = r
            if r.memory_limit and r.kill_deadline is None:
                self.limited.add(run_id)
        self._filed[run_id] = (session, group)
        if r.term_pending or r.kill_deadline is not None or r.done_cbs or (not r.leader_alive and not (r.gone and r.current)):
            self.ending.add(run_id)
        elif not r.leader_alive:
            self.gone.add(run_id)
