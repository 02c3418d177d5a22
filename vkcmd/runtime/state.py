"""The runtime's state on disk: one small JSON record per run, plus the exit file the monitor writes.

Layout under ``<state_dir>/runs/``: ``<run_id>.json`` (written by vkcmd: who the run is, and its
exit once known) and ``<run_id>.exit`` (written by the run's monitor: the exit status, one line).
Every write is a write beside the target then a rename, so a reader (or a restarted vkcmd) sees the
old or the new file, never half of one. No fsync: this guards against vkcmd dying, not the machine.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_VERSION = 1


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the new one."""
    path = os.fspath(path)
    tmp = f"{path}.tmp.{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass
class RunRecord:
    """What survives a restart of vkcmd about one run; written once the run is spawned, and again
    with its exit."""
    key: str
    run_id: str
    container_dir: str
    started_at: float
    memory_limit_bytes: int | None = None
    pid: int | None = None            # leader pid = pgid = sid
    leader_start: int | None = None   # /proc/<pid>/stat starttime (clock ticks after boot)
    boot_id: str = ""
    finished_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    message: str = ""
    version: int = _VERSION

    def to_json(self) -> bytes:
        return json.dumps(vars(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RunRecord:
        raw = json.loads(data)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


class StateStore:
    """The ``runs/`` directory of one state dir."""

    def __init__(self, state_dir: str | os.PathLike):
        self.dir = Path(state_dir) / "runs"

    def create(self) -> str:
        """Create the directory; returns this state dir's instance id (made once, kept for good),
        the prefix of every run id it hands out, so that its runs are known by their marker even
        when their record was never written (vkcmd killed between the spawn and the record)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir.parent / "instance"
        try:
            instance = path.read_text().strip()
        except FileNotFoundError:
            instance = ""
        if not instance:
            instance = secrets.token_hex(4)
            atomic_write(path, f"{instance}\n".encode())
        return instance

    def record_path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.json"

    def exit_path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.exit"

    def write(self, record: RunRecord) -> None:
        atomic_write(self.record_path(record.run_id), record.to_json(), 0o600)

    def load_all(self) -> list[RunRecord]:
        """Every readable record, oldest start first; unreadable ones are logged and skipped."""
        records = []
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                records.append(RunRecord.from_json((self.dir / name).read_bytes()))
            except (OSError, ValueError, TypeError) as err:
                log.warning("skipping unreadable run record %s: %s", name, err)
        records.sort(key=lambda r: r.started_at)
        return records

    def read_exit(self, run_id: str) -> tuple[int, float] | None:
        """(exit status, time it was recorded) as the monitor wrote it, or None."""
        path = self.exit_path(run_id)
        try:
            with open(path, "rb") as f:
                text = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
            return int(text.strip()), mtime
        except (OSError, ValueError):
            return None

    def remove(self, run_id: str) -> None:
        for path in (self.record_path(run_id), self.exit_path(run_id)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
