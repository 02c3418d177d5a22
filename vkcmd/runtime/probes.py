"""Exec probes: run a probe command in a container's environment and directory, with a timeout.

A small pool of worker threads runs probes for every container (no thread per
container); each probe is its own session so that a timed-out probe and
anything it started are killed as a group. Results come back through a
callback, which must not block.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger("vkcmd.runtime.probes")

OUTPUT_LIMIT = 10 * 1024  # the kubelet keeps at most this much of a probe's output


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    output: str  # combined stdout/stderr (truncated), or why it could not run
    timed_out: bool = False


class ProbeRunner:
    """Runs exec probes on a bounded pool of threads."""

    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vkcmd-probe")

    def submit(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, timeout: float,
               on_result: Callable[[ProbeResult], None]) -> None:
        """Run ``argv`` soon; ``on_result`` is called from a pool thread with the outcome."""
        def job() -> None:
            try:
                result = run_probe(argv, env, cwd, timeout)
            except Exception as error:  # a probe must never take down the pool
                log.exception("probe failed to run")
                result = ProbeResult(False, f"probe could not run: {error}")
            on_result(result)

        self._pool.submit(job)

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def run_probe(argv: Sequence[str], env: Mapping[str, str], cwd: str, timeout: float) -> ProbeResult:
    """Run one exec probe to completion: success is exit status 0 within ``timeout`` seconds."""
    if not argv:
        return ProbeResult(False, "exec probe has no command")
    try:
        process = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as error:
        return ProbeResult(False, f"exec {argv[0]!r} failed: {error.strerror}")
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)  # not reaped yet, so the group id is still the probe's
        process.communicate()
        return ProbeResult(False, f"command timed out after {timeout:g}s", timed_out=True)
    text = output[:OUTPUT_LIMIT].decode("utf-8", "replace")
    return ProbeResult(process.returncode == 0, text)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
