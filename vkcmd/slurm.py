"""The walltime of the Slurm allocation vkcmd runs in, when JIRIAF_WALLTIME is not given.

Slurm (23.02 and later) exports SLURM_JOB_END_TIME, the job's projected end as a
Unix time; older versions are asked with ``squeue -h -j $SLURM_JOB_ID -o %L``
(time left). Either way the node's walltime becomes the seconds left in the job.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("vkcmd.slurm")

_TIME_LEFT = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


def parse_time_left(text: str) -> int | None:
    """Seconds in squeue's ``%L`` format: [days-][hours:]minutes:seconds; None for UNLIMITED/NOT_SET."""
    match = _TIME_LEFT.match(text.strip())
    if not match:
        return None
    days, hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def job_seconds_left(env: Mapping[str, str], *, now: Callable[[], float] = time.time,
                     squeue: str | None = None) -> int | None:
    """Seconds left in the current Slurm job, or None outside a job or when unlimited/unknown."""
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if not job:
        return None
    end = env.get("SLURM_JOB_END_TIME", "").strip()
    if end.isdigit():
        return max(0, int(int(end) - now()))
    command = squeue or shutil.which("squeue", path=env.get("PATH"))
    if not command:
        return None
    try:
        answer = subprocess.run([command, "-h", "-j", job, "-o", "%L"], capture_output=True, text=True,
                                timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("could not ask squeue for the time left in job %s: %s", job, error)
        return None
    return parse_time_left(answer.stdout.strip().splitlines()[0]) if answer.stdout.strip() else None
