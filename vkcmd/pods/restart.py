"""restartPolicy and CrashLoopBackOff, as the kubelet applies them (pure functions)."""

from __future__ import annotations

RESET_AFTER = 600.0  # a run this long (10 min) clears the back-off


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether an app container that ended with ``exit_code`` runs again."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def restart_delay(crashes: int, initial: float, maximum: float) -> float:
    """Seconds to wait before the next run after ``crashes`` consecutive ends (the first restart is immediate)."""
    if crashes <= 1:
        return 0.0
    return min(initial * 2 ** (crashes - 2), maximum)


def crashes_after_run(previous_crashes: int, run_seconds: float) -> int:
    """The consecutive-crash count after a run of ``run_seconds``: a long run starts over."""
    return 1 if run_seconds >= RESET_AFTER else previous_crashes + 1
