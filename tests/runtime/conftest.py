"""Fixtures for runtime tests: real Runtimes on temporary state dirs, and a leak check.

Every run a test starts carries ``VKCMD_RUN=<run id>``; at teardown the ``rt`` fixture stops its
runtimes, then looks for any live (non-zombie) process whose marker names one of the test's runs,
kills and reports it: a test that leaves a process behind fails.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import time
from pathlib import Path

import pytest

from vkcmd.runtime import ExitReport, LaunchSpec, Runtime

SCAN = 0.1


def live(pid: int, start: int | None = None) -> bool:
    """True if ``pid`` runs (not a zombie), and has start time ``start`` when given."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0] != b"Z" and (start is None or int(fields[19]) == start)


def describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} {cmd!r} stat={stat.split(')')[1].split()[:5]}"


def marked_processes(run_ids: set[str]) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"VKCMD_RUN=") and item[10:].decode() in run_ids and live(int(name)):
                found.append(int(name))
    return found


class Harness:
    """A Runtime plus what tests need around it: an exit queue, container dirs, launch helpers."""

    def __init__(self, base: Path, state: Path | None = None, **kwargs):
        self.base = base
        self.state = state or base / "state"
        self.exits: queue.Queue[ExitReport] = queue.Queue()
        self.launched = []
        kwargs.setdefault("scan_interval", SCAN)
        kwargs.setdefault("on_exit", self.exits.put)
        self.rt = Runtime(self.state, **kwargs)
        self.rt.start()

    def cdir(self, name: str) -> Path:
        d = self.base / "c" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def spec(self, key: str, argv, **kw) -> LaunchSpec:
        d = self.cdir(key.replace("/", "_"))
        env = kw.pop("env", None) or {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.base)}
        return LaunchSpec(key, list(argv), env, kw.pop("cwd", str(d)), str(d), **kw)

    def launch(self, key: str, argv, **kw):
        info = self.rt.launch(self.spec(key, argv, **kw))
        self.launched.append(info)
        return info

    def sh(self, key: str, script: str, **kw):
        return self.launch(key, ["sh", "-c", script], **kw)

    def exit(self, timeout: float = 10.0) -> ExitReport:
        return self.exits.get(timeout=timeout)

    def out(self, key: str, stream: str = "stdout") -> str:
        return (self.cdir(key.replace("/", "_")) / stream).read_text()

    def wait_out(self, key: str, text: str, timeout: float = 5.0, stream: str = "stdout") -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.out(key, stream) if (self.cdir(key.replace("/", "_")) / stream).exists() else ""
            if text in out:
                return out
            time.sleep(0.01)
        raise AssertionError(f"{text!r} not in {key} {stream}: {out!r}")


class Harnesses:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.all: list[Harness] = []

    def __call__(self, state: Path | None = None, **kwargs) -> Harness:
        h = Harness(self.tmp_path, state, **kwargs)
        self.all.append(h)
        return h

    def run_ids(self) -> set[str]:
        ids = {i.run_id for h in self.all for i in h.launched}
        for h in self.all:
            runs = h.state / "runs"
            if runs.is_dir():
                ids |= {p.name.split(".")[0] for p in runs.iterdir()}
        return ids


@pytest.fixture
def runtimes(tmp_path):
    hs = Harnesses(tmp_path)
    yield hs
    _teardown(hs)


@pytest.fixture
def rt(runtimes) -> Harness:
    return runtimes()


def _teardown(hs: Harnesses) -> None:
    ids = hs.run_ids()
    pids: list[int] = [i.pid for h in hs.all for i in h.launched]
    for h in hs.all:
        h.rt.stop()
    leaked = marked_processes(ids)
    deadline = time.monotonic() + 1.0                # a SIGKILL sent just now may not have landed yet
    while leaked and time.monotonic() < deadline:
        time.sleep(0.02)
        leaked = marked_processes(ids)
    described = [describe(pid) for pid in leaked]
    for pid in leaked:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # reap whatever of ours ended after its Runtime stopped (leaders are children of this process)
    for h in hs.all:
        runs = h.state / "runs"
        for rec in runs.glob("*.json") if runs.is_dir() else ():
            pid = json.loads(rec.read_text()).get("pid")
            if pid:
                pids.append(pid)
    for pid in pids + leaked:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    assert not leaked, f"processes left running by the test: {described}"


PYTHON = sys.executable
