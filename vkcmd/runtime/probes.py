"""Exec probes: run a probe command in a container's environment and directory, with a timeout.

A small pool of worker threads runs probes for every container (no thread per
container); each probe is its own session, done when its leader exits (never
waiting on a pipe a child holds), and whatever it leaves is killed: its group,
and anything carrying its marker. Results come back through a callback, which
must not block.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psutil

log = logging.getLogger("vkcmd.runtime.probes")

OUTPUT_LIMIT = 10 * 1024  # the kubelet keeps at most this much of a probe's output
MARKER = "VKCMD_PROBE"  # in each probe's environment: finds what it left behind, even in another session
DRAIN_READS = 16  # reads of what is left in the pipe once the leader has exited
CANCEL_CHECK = 0.25  # seconds between looks at the runner's stop flag while a probe runs


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    output: str  # combined stdout/stderr (truncated), or why it could not run
    timed_out: bool = False
    warning: str = ""  # a success with a warning (an httpGet redirected to another host), as the kubelet


class ProbeRunner:
    """Runs exec probes on a bounded pool of threads; a probe holds its thread at most its timeout."""

    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vkcmd-probe")
        self._stopping = threading.Event()

    def submit(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, timeout: float,
               on_result: Callable[[ProbeResult], None]) -> None:
        """Run ``argv`` soon; ``on_result`` is called from a pool thread with the outcome."""
        def job() -> None:
            try:
                result = run_probe(argv, env, cwd, timeout, cancel=self._stopping)
            except Exception as error:  # a probe must never take down the pool
                log.exception("probe failed to run")
                result = ProbeResult(False, f"probe could not run: {error}")
            on_result(result)

        if not self._stopping.is_set():
            self._pool.submit(job)

    def call(self, check: Callable[[], ProbeResult], on_result: Callable[[ProbeResult], None]) -> None:
        """Run ``check`` (a network probe, bounded by its own timeout) on the pool."""
        def job() -> None:
            try:
                result = check()
            except Exception as error:
                log.exception("probe failed to run")
                result = ProbeResult(False, f"probe could not run: {error}")
            on_result(result)

        if not self._stopping.is_set():
            self._pool.submit(job)

    def stop(self) -> None:
        """Cancel queued probes, kill running ones, and join the pool."""
        self._stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


def run_probe(argv: Sequence[str], env: Mapping[str, str], cwd: str, timeout: float,
              cancel: threading.Event | None = None) -> ProbeResult:
    """Run one exec probe to completion: success is exit status 0 within ``timeout`` seconds.

    The probe is done when its leader exits — not when its output pipe closes, which a child
    it left behind may hold for ever; then whatever it left (its session, and anything still
    carrying its marker or holding its pipe) is killed.
    """
    if not argv:
        return ProbeResult(False, "exec probe has no command")
    marker = uuid.uuid4().hex
    read_fd, write_fd = os.pipe()
    try:
        process = subprocess.Popen(list(argv), env={**env, MARKER: marker}, cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=write_fd, stderr=write_fd, start_new_session=True)
    except OSError as error:
        os.close(read_fd)
        return ProbeResult(False, f"exec {argv[0]!r} failed: {error.strerror}")
    finally:
        os.close(write_fd)
    try:
        output, eof, timed_out = _collect(process, read_fd, time.monotonic() + timeout, cancel)
    finally:
        os.close(read_fd)
    lingering = _kill_group(process.pid)  # the leader is reaped, but its group id stays taken while members live
    if timed_out:
        process.kill()
        process.wait()
    if not eof or lingering:  # something it started outlived it: find it by the marker, wherever it went
        _kill_marked(marker)
    if timed_out:
        return ProbeResult(False, f"command timed out after {timeout:g}s", timed_out=True)
    text = output[:OUTPUT_LIMIT].decode("utf-8", "replace")
    return ProbeResult(process.returncode == 0, text)


def _collect(process: subprocess.Popen, fd: int, deadline: float,
             cancel: threading.Event | None) -> tuple[bytes, bool, bool]:
    """(output, pipe at EOF, timed out): read until the leader exits or the deadline passes."""
    chunks, size, eof = [], 0, False
    os.set_blocking(fd, False)
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            if process.poll() is not None:
                for _ in range(DRAIN_READS):  # what is already written (a child may write on for ever)
                    if eof or (data := _read(fd)) is None:
                        break
                    eof = not data
                    chunks.append(data[:max(0, OUTPUT_LIMIT - size)])
                    size += len(data)
                return b"".join(chunks), eof, False
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (cancel is not None and cancel.is_set()):
                return b"".join(chunks), eof, True
            if eof:
                try:
                    process.wait(min(remaining, CANCEL_CHECK))
                except subprocess.TimeoutExpired:
                    pass
                continue
            for _ in selector.select(min(remaining, CANCEL_CHECK)):
                data = _read(fd)
                if data is None:
                    continue
                if not data:
                    eof = True
                    selector.unregister(fd)
                    break
                if size < OUTPUT_LIMIT:
                    chunks.append(data[:OUTPUT_LIMIT - size])
                size += len(data)


def _read(fd: int) -> bytes | None:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None


def _kill_group(pgid: int) -> bool:
    """SIGKILL the probe's process group; True when a member was still there."""
    try:
        os.killpg(pgid, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _kill_marked(marker: str) -> None:
    """SIGKILL every process (and its descendants) that carries this probe's marker."""
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER) != marker:
                continue
            victims = [proc, *proc.children(recursive=True)]
        except (psutil.Error, OSError):
            continue
        for victim in victims:
            try:
                victim.kill()
            except psutil.Error:
                pass
