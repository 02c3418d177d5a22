"""Re-adopting runs after a restart of vkcmd, and the exit reports made from records and exit files.

A recorded run whose leader still lives - same boot, pid and start time, so a reused pid is never
taken for it - is adopted; one that ended while vkcmd was down is reported with the exit its monitor
recorded; a run of this state dir that has no record (vkcmd died between spawn and record) is killed.
Works on the ``RunTable`` it is given.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from vkcmd.logfmt import fields
from vkcmd.runtime import reaper as rp
from vkcmd.runtime.process_run import Run, RunTable
from vkcmd.runtime.process_scan import Scanner
from vkcmd.runtime.process_stat import read_stat
from vkcmd.runtime.reaper import ExitReport, Reaper
from vkcmd.runtime.spawn import RunInfo
from vkcmd.runtime.state import RunRecord, StateStore

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


class Recoverer:
    """``Runtime.recover()``: the runs of the state dir back into the table. ``instance`` and
    ``boot_id`` are set by ``Runtime.start()``."""

    def __init__(self, table: RunTable, store: StateStore, scanner: Scanner, reaper: Reaper,
                 clock: Callable[[], float]):
        self.table = table
        self.store = store
        self.scanner = scanner
        self.reaper = reaper
        self.clock = clock
        self.instance = ""
        self.boot_id = ""

    def recover(self) -> list[Recovered]:
        """See ``Runtime.recover``."""
        table = self.table
        newest: dict[str, RunRecord] = {}
        stale: list[RunRecord] = []
        for record in self.store.load_all():             # oldest first
            if record.key in newest:
                stale.append(newest[record.key])
            newest[record.key] = record
        results = []
        for record in newest.values():
            with table.lock:
                run = table.by_id.get(record.run_id)
                other = table.by_key.get(record.key)
            if run is None and other is not None:        # the key has a newer run of ours
                stale.append(record)
                continue
            if run is None:
                run = self._adopt(record)
            results.append(Recovered(run.key, run.info, run.exit))
        for record in stale:
            with table.lock:
                known = record.run_id in table.by_id
            if not known:
                self._adopt(record, current=False)
        self._kill_unrecorded()
        with table.lock:
            table.wake()
        return sorted(results, key=lambda r: r.key)

    def _kill_unrecorded(self) -> None:
        """Runs of this state dir with no record (vkcmd died between their spawn and their record):
        nobody knows they started, so they are killed, like leftovers of an ended run."""
        self.scanner.scan()
        prefix = self.instance + "-"
        with self.table.lock:
            for run_id in self.scanner.tracker.markers(prefix) - self.table.by_id.keys():
                record = RunRecord("", run_id, "", 0.0)
                self.table.by_id[run_id] = Run("", run_id, record, starting=False, current=False, silent=True)
                self.table.changed()
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
            record_exit(self.store, run, self._ended_while_down(run))
        table = self.table
        with table.lock:
            if current:
                table.by_key[run.key] = run
            table.by_id[run.run_id] = run
            table.changed(run)
            if pidfd is not None:
                run.leader_alive = True
                table.by_pid[run.pid] = run
                if not current:
                    table.set_deadline(run, time.monotonic(), term=False)
            elif record.exit_code is not None:
                run.exit = run.exit or report_of(record)
        if pidfd is not None:
            self.reaper.watch(run.pid, pidfd)
        log.info("run recovered", extra=fields(key=run.key, run=run.run_id, pid=run.pid,
                                               running=pidfd is not None,
                                               exit_code=None if run.exit is None else run.exit.exit_code))
        return run

    def _verify(self, record: RunRecord) -> tuple[int | None, bool]:
        """(pidfd, is our child) when the recorded leader still runs - same boot, same pid, same
        start time, not a zombie - else (None, False); an ended leader that is our own zombie
        (a Runtime restarted inside one process) is reaped."""
        if record.boot_id != self.boot_id:
            return None, False
        try:
            pidfd = os.pidfd_open(record.pid)
        except (ProcessLookupError, OSError):
            return None, False
        stat = read_stat(record.pid, self.scanner.tracker.proc)
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
            return ExitReport(run.key, run.run_id, 128, None, self.clock(), rp.START_ERROR,
                              record.started_at, "the run's record names no process")
        recorded = self.store.read_exit(run.run_id)
        if recorded is not None:
            return report_of_exit_file(run, *recorded)
        return ExitReport(run.key, run.run_id, 137, None, self.clock(), rp.STATUS_UNKNOWN,
                          record.started_at, "the run ended while vkcmd was down and its exit was not recorded")


def report_of_exit_file(run: Run, code: int, recorded_at: float) -> ExitReport:
    """The exit its monitor recorded (exit code, file time)."""
    # the file's mtime comes from the kernel's coarse clock: it may lag started_at by a tick
    return ExitReport(run.key, run.run_id, code, rp.signal_of(code), max(recorded_at, run.record.started_at),
                      rp.reason_of(code), run.record.started_at)


def report_of(record: RunRecord) -> ExitReport:
    """The exit a run record holds."""
    return ExitReport(record.key, record.run_id, record.exit_code, record.signal,
                      record.finished_at or 0.0, record.reason or rp.reason_of(record.exit_code),
                      record.started_at, record.message)


def record_exit(store: StateStore, run: Run, report: ExitReport) -> None:
    """The exit into the run's record on disk (logged when it cannot be written) and into ``run``."""
    record = run.record
    record.exit_code, record.signal, record.finished_at = report.exit_code, report.signal, report.finished_at
    record.reason, record.message = report.reason, report.message
    try:
        store.write(record)
    except OSError as err:
        log.error("cannot record exit", extra=fields(key=run.key, run=run.run_id, error=str(err)))
    run.exit = report
