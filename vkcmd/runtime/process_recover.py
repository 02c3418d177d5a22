"""Re-adopting runs after a restart of vkcmd: part of ``Runtime`` (a mixin over its tables).

A recorded run whose leader still lives - same boot, pid and start time, so a reused pid is never
taken for it - is adopted; one that ended while vkcmd was down is reported with the exit its monitor
recorded; a run of this state dir that has no record (vkcmd died between spawn and record) is killed.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from vkcmd.logs import fields
from vkcmd.runtime import reaper as rp
from vkcmd.runtime.process_run import Run
from vkcmd.runtime.process_stat import read_stat
from vkcmd.runtime.reaper import ExitReport
from vkcmd.runtime.spawn import RunInfo
from vkcmd.runtime.state import RunRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovered:
    """A run found in the state dir by ``recover()``: still running (``exit`` is None; it has been
    re-adopted and its exit will come through ``on_exit``) or ended while vkcmd was down (``exit``
    says how; not reported through ``on_exit``)."""
    key: str
    info: RunInfo
    exit: ExitReport | None

    @property
    def running(self) -> bool:
        return self.exit is None


class Recovery:
    """``Runtime.recover()`` and what it needs. Uses the Runtime's lock, tables, store and reaper."""

    def recover(self) -> list[Recovered]:
        """Re-adopt the runs recorded in the state dir (after a restart of vkcmd; call after
        ``start()``). One ``Recovered`` per key (its newest run), sorted by key: a run whose leader
        still lives with the recorded start time (and boot) is adopted and its exit will come
        through ``on_exit``; any other ended while vkcmd was down and carries the exit its monitor
        recorded (``ContainerStatusUnknown``, 137, when none was). What ended runs left behind, and
        runs of this state dir that were never recorded, are killed. Idempotent: a second call
        adopts nothing twice and returns the same runs (ended ones stay until ``forget``)."""
        self._require_started()
        newest: dict[str, RunRecord] = {}
        stale: list[RunRecord] = []
        for record in self._store.load_all():            # oldest first
            if record.key in newest:
                stale.append(newest[record.key])
            newest[record.key] = record
        results = []
        for record in newest.values():
            with self._lock:
                run = self._by_id.get(record.run_id)
                other = self._by_key.get(record.key)
            if run is None and other is not None:        # the key has a newer run of ours
                stale.append(record)
                continue
            if run is None:
                run = self._adopt(record)
            results.append(Recovered(run.key, run.info, run.exit))
        for record in stale:
            with self._lock:
                known = record.run_id in self._by_id
            if not known:
                self._adopt(record, current=False)
        self._kill_unrecorded()
        with self._cond:
            self._sweep = True
            self._cond.notify_all()
        return sorted(results, key=lambda r: r.key)

    def _kill_unrecorded(self) -> None:
        """Runs of this state dir with no record (vkcmd died between their spawn and their record):
        nobody knows they started, so they are killed, like leftovers of an ended run."""
        self._scan()
        prefix = self._instance + "-"
        with self._lock:
            for run_id in self._tracker.markers(prefix) - self._by_id.keys():
                record = RunRecord("", run_id, "", 0.0)
                self._by_id[run_id] = Run("", run_id, record, starting=False, current=False, silent=True)
                log.warning("killing a run that was never recorded", extra=fields(run=run_id))

    def _adopt(self, record: RunRecord, current: bool = True) -> Run:
        run = Run(record.key, record.run_id, record, record.memory_limit_bytes, starting=False,
                   current=current, silent=not current)
        pidfd, child = None, False
        if record.exit_code is None and record.pid is not None:
            pidfd, child = self._verify(record)
        run.pid, run.child = record.pid or 0, child
        run.info = RunInfo(record.key, record.run_id, run.pid, run.pid, record.leader_start or 0,
                           record.started_at, record.container_dir)
        if pidfd is None and record.exit_code is None:
            self._record_exit(run, self._ended_while_down(run))
        with self._cond:
            if current:
                self._by_key[run.key] = run
            self._by_id[run.run_id] = run
            if pidfd is not None:
                run.leader_alive = True
                self._by_pid[run.pid] = run
                if not current:
                    self._set_deadline(run, time.monotonic(), term=False)
            elif record.exit_code is not None:
                run.exit = run.exit or self._report_of(record)
        if pidfd is not None:
            self._reaper.watch(run.pid, pidfd)
        log.info("run recovered", extra=fields(key=run.key, run=run.run_id, pid=run.pid,
                                               running=pidfd is not None,
                                               exit_code=None if run.exit is None else run.exit.exit_code))
        return run

    def _verify(self, record: RunRecord) -> tuple[int | None, bool]:
        """(pidfd, is our child) when the recorded leader still runs - same boot, same pid, same
        start time, not a zombie - else (None, False); an ended leader that is our own zombie
        (a Runtime restarted inside one process) is reaped."""
        if record.boot_id != self._boot_id:
            return None, False
        try:
            pidfd = os.pidfd_open(record.pid)
        except (ProcessLookupError, OSError):
            return None, False
        stat = read_stat(record.pid, self._tracker.proc)
        if stat is None or stat.start != record.leader_start:
            os.close(pidfd)
            return None, False
        child = stat.ppid == os.getpid()
        if stat.state == "Z":
            os.close(pidfd)
            if child:
                rp.reap(record.pid)
            return None, False
        return pidfd, child

    def _ended_while_down(self, run: Run) -> ExitReport:
        record = run.record
        if record.pid is None:
            return ExitReport(run.key, run.run_id, 128, None, self._clock(), rp.START_ERROR,
                              record.started_at, "the run's record names no process")
        recorded = self._store.read_exit(run.run_id)
        if recorded is not None:
            return self._report_of_exit_file(run, *recorded)
        return ExitReport(run.key, run.run_id, 137, None, self._clock(), rp.STATUS_UNKNOWN,
                          record.started_at, "the run ended while vkcmd was down and its exit was not recorded")

    @staticmethod
    def _report_of_exit_file(run: Run, code: int, recorded_at: float) -> ExitReport:
        # the file's mtime comes from the kernel's coarse clock: it may lag started_at by a tick
        return ExitReport(run.key, run.run_id, code, rp.signal_of(code), max(recorded_at, run.record.started_at),
                          rp.reason_of(code), run.record.started_at)

    @staticmethod
    def _report_of(record: RunRecord) -> ExitReport:
        return ExitReport(record.key, record.run_id, record.exit_code, record.signal,
                          record.finished_at or 0.0, record.reason or rp.reason_of(record.exit_code),
                          record.started_at, record.message)

    def _record_exit(self, run: Run, report: ExitReport) -> None:
        record = run.record
        record.exit_code, record.signal, record.finished_at = report.exit_code, report.signal, report.finished_at
        record.reason, record.message = report.reason, report.message
        try:
            self._store.write(record)
        except OSError as err:
            log.error("cannot record exit", extra=fields(key=run.key, run=run.run_id, error=str(err)))
        run.exit = report
