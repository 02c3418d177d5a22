"""The tracker's orphans: members whose parent is no member, kept as membership and parentage move.

An orphan (nobody in its run will reap it and fold its CPU time into their own) has its stat read
at every scan; a live run's leader is none (vkcmd reaps it). Kept with an index of each member's
children, so a scan costs the changes it saw, not a pass over every member. Internal to the tracker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class Member(Protocol):
    pid: int
    ppid: int
    sid: int


class Parentage:
    """``orphans``: the pids of the orphans among ``members`` (the tracker's dict, read only here)."""

    def __init__(self, members: Mapping[int, Member]) -> None:
        self._members = members
        self.orphans: set[int] = set()
        self._kids: dict[int, set[int]] = {}       # pid -> the members whose parent it is
        self._sessions: frozenset[int] = frozenset()   # the live sessions the orphans were judged with
        self._sessions_of: object = None                # ... as the mapping given last (unchanged: not compared)

    def added(self, p: Member) -> None:
        """``p`` was just added to the members."""
        self._kids.setdefault(p.ppid, set()).add(p.pid)
        self._judge(p)
        for kid in self._kids.get(p.pid, ()):
            self.orphans.discard(kid)

    def removed(self, p: Member) -> None:
        """``p`` was just removed from the members: its children are orphans now."""
        self._unkid(p)
        self.orphans.discard(p.pid)
        for kid in self._kids.get(p.pid, ()):
            self._judge(self._members[kid])

    def moved(self, p: Member, ppid: int, sid: int) -> None:
        """Member ``p`` was re-parented or began a session."""
        self._unkid(p)
        p.ppid, p.sid = ppid, sid
        self._kids.setdefault(ppid, set()).add(p.pid)
        self._judge(p)

    def live_sessions(self, live_sids: Mapping[int, str]) -> None:
        """The leaders of sessions that began or ended are judged again."""
        if live_sids is self._sessions_of:
            return
        self._sessions_of = live_sids
        sessions = frozenset(live_sids)
        if sessions == self._sessions:
            return
        changed = sessions ^ self._sessions
        self._sessions = sessions
        for pid in changed:
            p = self._members.get(pid)
            if p is not None:
                self._judge(p)

    def clear(self) -> None:
        self.orphans.clear()
        self._kids.clear()
        self._sessions = frozenset()
        self._sessions_of = None

    def _judge(self, p: Member) -> None:
        if p.ppid not in self._members and not (p.pid == p.sid and p.sid in self._sessions):
            self.orphans.add(p.pid)
        else:
            self.orphans.discard(p.pid)

    def _unkid(self, p: Member) -> None:
        kids = self._kids.get(p.ppid)
        if kids is not None:
            kids.discard(p.pid)
            if not kids:
                del self._kids[p.ppid]
