"""The provider's pods in memory: ``PodTable``, the one lock over the records by uid and by name, the
pods waiting on objects, the cleaned ones, renewed tokens and recovered runs (the manager holds none).
It knows which input reaches which record, never what a sync does with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from vkcmd.machines import CONTAINER_WAITING, POD_RUNNING, PodState as PS
from vkcmd.pods.errors import CONTAINER_CREATING
from vkcmd.pods.volumes import SERVICE_ACCOUNT_TOKEN_RENEWED
from vkcmd.provider.probing import ProbeItem
from vkcmd.provider.records import ContainerRecord, PodRecord, grace_period
from vkcmd.runtime import ExitReport, Recovered

WAITS_ON_OBJECTS = ("CreateContainerConfigError", CONTAINER_CREATING)  # retried when an object changes


class StatsPod(NamedTuple):
    """What the stats of a pod need of it (``PodTable.stats_pods``); replaced when one of these
    changes, never changed."""

    uid: str
    namespace: str
    name: str
    start_time: str | None       # status.startTime (the published status, else the API's)
    containers: tuple[str, ...]  # spec.containers' names


def _stats_pod(record: PodRecord) -> StatsPod:
    pod = record.pod
    meta, status = pod["metadata"], record.status or pod.get("status") or {}
    containers = (pod.get("spec") or {}).get("containers") or ()
    return StatsPod(meta["uid"], meta.get("namespace"), meta.get("name"), status.get("startTime"),
                    tuple(c["name"] for c in containers if isinstance(c, dict) and isinstance(c.get("name"), str)))


@dataclass
class SyncInput:
    """What one sync of a pod takes from the table: the record and the input handed in since."""

    record: PodRecord
    pod: dict[str, Any]
    removed: bool
    exits: list[ExitReport]
    probe_results: list[ProbeItem]
    drain: tuple[str, str, bool] | None
    hurry: bool
    tokens_renewed: bool
    changes: int  # the object-change count when taken (see ``note_waiting``)


class PodTable:
    """Every pod record of one PodManager, and the lock that guards them and their pending input.

    ``_waiting``: uid -> namespace of the pods that may wait on a ConfigMap, Secret or token (an
    object change retries only these: O(waiting), not O(pods)); ``_changes`` counts the changes.
    ``_cleaned``: pods cleaned up and handed to ``pod_gone``, until the API's DELETED (or a re-list)
    drops them, so that a MODIFIED of the dying object (our own final status write) cannot start it
    again. Methods returning uids return the pods to queue.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, PodRecord] = {}
        self._by_name: dict[tuple[str, str], str] = {}  # (namespace, name) -> uid
        self._waiting: dict[str, str] = {}
        self._changes = 0
        self._cleaned: dict[str, None] = {}
        self._tokens_renewed: set[str] = set()  # pods whose running containers get their renewed tokens
        self._recovered: dict[str, Recovered] = {}
        self._stats: dict[str, StatsPod] = {}           # uid -> what the stats need, in the records' order
        self._stats_view: tuple[StatsPod, ...] | None = ()   # those, as handed out (None: to make again)

    def _note_stats(self, record: PodRecord) -> None:
        """(lock held) The record's pod or status may have changed what the stats need of it."""
        entry = _stats_pod(record)
        if self._stats.get(record.uid) != entry:
            self._stats[record.uid] = entry
            self._stats_view = None

    # --- pods in and out ----------------------------------------------------------------------

    def admit(self, pod: dict[str, Any], make: Callable[[], PodRecord]) -> bool:
        """A pod from the API: a new record (``make``) or the record's pod replaced. False when the
        pod is not ours to run: cleaned up already, or finished before we knew it."""
        uid = pod["metadata"]["uid"]
        with self._lock:
            record = self._records.get(uid)
            if record is not None:
                record.pod = pod
                self._note_stats(record)
                return True
            if uid in self._cleaned:
                return False  # its end is done; the API object is on its way out
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and \
                    not pod["metadata"].get("deletionTimestamp") and \
                    not any(key.startswith(uid + "/") for key in self._recovered):
                return False  # finished before we knew it; nothing to run, nothing to report
            record = self._records[uid] = make()
            self._waiting[uid] = record.namespace
            self._by_name[(record.namespace, record.name)] = uid
            self._note_stats(record)
            return True

    def mark_removed(self, uid: str) -> bool:
        """The pod is gone from the API; False when it has no record."""
        with self._lock:
            self._cleaned.pop(uid, None)
            record = self._records.get(uid)
            if record is None:
                return False
            record.removed = True
            return True

    def drop(self, record: PodRecord, cleaned: bool) -> dict[str, Any] | None:
        """The pod is cleaned up: forget its record; its final status. ``cleaned`` (it was not removed
        from the API): it counts as cleaned until the API drops it."""
        with self._lock:
            self._records.pop(record.uid, None)
            self._waiting.pop(record.uid, None)
            if self._stats.pop(record.uid, None) is not None:
                self._stats_view = None
            if self._by_name.get((record.namespace, record.name)) == record.uid:
                del self._by_name[(record.namespace, record.name)]
            if cleaned:
                self._cleaned[record.uid] = None
            return record.status

    # --- runs from before a restart -----------------------------------------------------------

    def set_recovered(self, runs: Iterable[Recovered]) -> int:
        with self._lock:
            self._recovered = {r.key: r for r in runs}
            return len(self._recovered)

    def take_recovered(self, key: str) -> Recovered | None:
        with self._lock:
            return self._recovered.pop(key, None)

    def resync(self, alive: set[str]) -> list[Recovered]:
        """After a full list of the API (``alive``: its uids): forget cleaned pods it no longer has;
        the recovered runs of pods it does not have, taken out."""
        with self._lock:
            self._cleaned = {uid: None for uid in self._cleaned if uid in alive}
            orphans = [r for key, r in self._recovered.items() if key.split("/", 1)[0] not in alive]
            for orphan in orphans:
                self._recovered.pop(orphan.key, None)
        return orphans

    # --- input handed in by other threads -----------------------------------------------------

    def object_changed(self, kind: str, namespace: str, name: str) -> list[str]:
        """The pods of ``namespace`` (all when empty) waiting on objects; for a renewed token, also its
        pod ``name``, whose running containers get the new token at its next sync."""
        with self._lock:
            self._changes += 1
            waiting = [uid for uid, ns in self._waiting.items() if not namespace or ns == namespace]
            if kind == SERVICE_ACCOUNT_TOKEN_RENEWED:
                renewed = [uid] if (uid := self._by_name.get((namespace, name))) in self._records else []
                self._tokens_renewed.update(renewed)
                waiting += renewed
        return waiting

    def add_input(self, uid: str, *, exit: ExitReport | None = None, probe: ProbeItem | None = None) -> bool:
        """A run's exit or a probe (or hook) result for the pod's next sync; False without a record."""
        with self._lock:
            record = self._records.get(uid)
            if record is None:
                return False
            if exit is not None:
                record.exits.append(exit)
            if probe is not None:
                record.probe_results.append(probe)
            return True

    def mark_drain(self, reason: str, message: str, fast: bool) -> list[str]:
        """A node drain for every pod that runs or is ending."""
        with self._lock:
            records = [r for r in self._records.values() if r.state in POD_RUNNING or r.state is PS.ENDING]
            for record in records:
                record.drain = (reason, message, fast)
        return [record.uid for record in records]

    def mark_hurry(self) -> list[str]:
        """Cut short the grace of every pod ending or asked to drain."""
        with self._lock:
            records = [r for r in self._records.values() if r.state is PS.ENDING or r.drain is not None]
            for record in records:
                record.hurry = True
        return [record.uid for record in records]

    # --- the pod's worker ---------------------------------------------------------------------

    def take_input(self, uid: str) -> SyncInput | None:
        """The record of ``uid`` and the input pending on it (taken: the next sync sees only newer)."""
        with self._lock:
            record = self._records.get(uid)
            tokens_renewed = uid in self._tokens_renewed
            self._tokens_renewed.discard(uid)
            if record is None:
                return None
            taken = SyncInput(record=record, pod=record.pod, removed=record.removed, exits=record.exits,
                              probe_results=record.probe_results, drain=record.drain, hurry=record.hurry,
                              tokens_renewed=tokens_renewed, changes=self._changes)
            record.exits, record.probe_results, record.drain, record.hurry = [], [], None, False
            return taken

    def note_waiting(self, record: PodRecord, changes: int) -> bool:
        """Keep ``_waiting`` current after a sync; True when an object changed during it (retry)."""
        waits = record.state in POD_RUNNING and any(c.state in CONTAINER_WAITING and c.waiting_reason in
                                                    WAITS_ON_OBJECTS for c in record.containers())
        with self._lock:
            if not waits or record.uid not in self._records:
                self._waiting.pop(record.uid, None)
                return False
            self._waiting[record.uid] = record.namespace
            return changes != self._changes

    def in_api(self, uid: str) -> PodRecord | None:
        """The record of ``uid``, or None when it has none or is gone from the API."""
        with self._lock:
            record = self._records.get(uid)
            return None if record is None or record.removed else record

    def is_removed(self, record: PodRecord) -> bool:
        with self._lock:
            return record.removed

    def swap_status(self, record: PodRecord, status: dict[str, Any] | None) -> dict[str, Any] | None:
        """Publish ``status`` on the record; the one it replaces."""
        with self._lock:
            previous, record.status = record.status, status
            if self._records.get(record.uid) is record:
                self._note_stats(record)
            return previous

    # --- reads for the API side and the drain -------------------------------------------------

    def status(self, uid: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        with self._lock:
            record = self._records.get(uid)
            if record is None or record.status is None or record.removed:
                return None
            return record.pod["metadata"], record.status

    def pods(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**r.pod, "status": r.status or r.pod.get("status") or {}} for r in self._records.values()]

    def stats_pods(self) -> tuple[StatsPod, ...]:
        """What the stats need of every pod, in the order of ``pods()``: the same tuple (and entries)
        while none of it changed - no pod copied per call."""
        with self._lock:
            if self._stats_view is None:
                self._stats_view = tuple(self._stats.values())
            return self._stats_view

    def container(self, namespace: str, name: str, container: str) -> ContainerRecord | None:
        with self._lock:
            uid = self._by_name.get((namespace, name))
            record = self._records.get(uid) if uid is not None else None
            return record.container(container) if record else None

    def max_grace_period(self) -> float:
        with self._lock:
            return max((grace_period(r.pod) for r in self._records.values()), default=0.0)

    def all_stopped(self) -> bool:
        with self._lock:
            return all(not r.live() and r.state is not PS.ENDING and (r.drain is None or r.done)
                       for r in self._records.values())
