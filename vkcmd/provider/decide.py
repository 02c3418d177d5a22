"""The provider's decisions, as pure functions: what a pod's sync should do.

Given a record's containers, the pod's spec and the time, these say which runs
restart and after what back-off, when the pod ends (deletion, removal, deadline)
and what ending it takes, which containers to start and which to stop. They fire
no machine and touch no process, queue or API: ``manager`` performs what they decide.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vkcmd.machines import CONTAINER_LIVE, CONTAINER_WAITING, ContainerState as CS
from vkcmd.pods.restart import crashes_after_run, restart_delay, should_restart
from vkcmd.provider.records import ContainerRecord, Ending, grace_period

DEADLINE_REASON = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
DISRUPTION_REASON = "TerminationByKubelet"  # the kubelet's node shutdown manager's reason


def restart_policy(pod: dict[str, Any]) -> str:
    return (pod.get("spec") or {}).get("restartPolicy", "Always")


# --- exits -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AfterExit:
    """What follows the end of one run."""

    again: bool  # the container runs again
    crashes: int  # the consecutive-crash count after this run
    delay: float  # seconds of back-off before the next run (0: at once)
    init_failed: bool = False  # an init container failed and will not run again: the pod fails


def after_exit(policy: str, init: bool, exit_code: int, ran: float, crashes: int, backoff: tuple[float, float],
               ending: bool, sidecar: bool = False) -> AfterExit:
    """restartPolicy and CrashLoopBackOff for a run that ended with ``exit_code`` after ``ran`` seconds.

    An init container runs again only after a failure (unless Never, which fails the pod);
    a sidecar always runs again; nothing runs again once the pod is ending.
    """
    if ending:
        return AfterExit(False, crashes, 0.0)
    if sidecar:
        again, failed = True, False
    elif init:
        again = exit_code != 0 and policy != "Never"
        failed = exit_code != 0 and policy == "Never"
    else:
        again, failed = should_restart(policy, exit_code), False
    if not again:
        return AfterExit(False, crashes, 0.0, init_failed=failed)
    crashes = crashes_after_run(crashes, ran)
    return AfterExit(True, crashes, restart_delay(crashes, *backoff))


# --- ending ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EndingCheck:
    """The ending in effect after a check, and when to check the deadline again."""

    ending: Ending | None
    begun: bool = False  # ``ending`` is new (or replaces one): the pod starts or restarts ending
    deadline_in: float | None = None  # seconds until activeDeadlineSeconds (come back then)
    deadline_hit: bool = False  # ``ending`` is the deadline's


def check_ending(pod: dict[str, Any], *, removed: bool, current: Ending | None, active: bool,
                 start_time: float, now: float) -> EndingCheck:
    """A deletion (or removal from the API) ends the pod with its grace, keeping a drain's reason
    and never lengthening a grace in progress; ``activeDeadlineSeconds`` ends an active pod."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    if meta.get("deletionTimestamp") or removed:
        grace = grace_period(pod) if removed else float(meta.get("deletionGracePeriodSeconds", grace_period(pod)))
        if current is None:
            return EndingCheck(Ending("", "", grace, None, delete=True), begun=True)
        if not current.delete:
            return EndingCheck(Ending(current.reason, current.message, min(grace, current.grace), current.phase,
                                      delete=True, disruption=current.disruption), begun=True)
        shorter = float(meta.get("deletionGracePeriodSeconds", current.grace))
        if shorter < current.grace:  # a second delete with a shorter grace: every container is told again
            return EndingCheck(dataclasses.replace(current, grace=shorter, signalled=set(), prestop={}))
        return EndingCheck(current)
    deadline = spec.get("activeDeadlineSeconds")
    if current is not None or not active or deadline is None:
        return EndingCheck(current)
    remaining = start_time + float(deadline) - now
    if remaining > 0:
        return EndingCheck(None, deadline_in=remaining)
    return EndingCheck(Ending(DEADLINE_REASON, DEADLINE_MESSAGE, grace_period(pod), "Failed", delete=False),
                       begun=True, deadline_hit=True)


def drain_ending(pod: dict[str, Any], current: Ending | None, reason: str, message: str,
                 fast: bool) -> Ending | None:
    """The ending a node drain gives a pod that is active or ending (None: keep ``current``):
    a deletion in progress keeps its own."""
    if current is not None and current.delete:
        return None
    return Ending(reason, message, 0.0 if fast else grace_period(pod), "Failed", delete=False, disruption=True)


def sidecars_ending(pod: dict[str, Any]) -> Ending:
    """The main containers are done but sidecars run: they are stopped with the pod's grace, and
    the pod's phase is then the main containers' (no reason of its own)."""
    return Ending("", "", grace_period(pod), None, delete=False)


def hurried(current: Ending) -> Ending:
    """The same ending with no grace left: every container is told again, to die now."""
    return dataclasses.replace(current, grace=0.0, signalled=set(), prestop={})


@dataclass(frozen=True)
class EndPlan:
    """One step of ending a pod."""

    abandon: tuple[ContainerRecord, ...]  # never ran this time: move to Exited
    terminate: tuple[ContainerRecord, ...]  # live and not yet told (with the ending's grace)
    settled: bool  # no live process is left: the pod can be stopped or cleaned


def end_plan(containers: Sequence[ContainerRecord], ending: Ending) -> EndPlan:
    """Sidecars are told only once every other container has stopped (as the kubelet ends them last)."""
    abandon = tuple(c for c in containers if c.state in CONTAINER_WAITING)
    live = [c for c in containers if c.state in CONTAINER_LIVE]
    first = [c for c in live if not c.sidecar] or live
    terminate = tuple(c for c in first if c.key not in ending.signalled)
    return EndPlan(abandon, terminate, settled=not live)


# --- starting ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StartPlan:
    """What an active pod should start now, and when to look again."""

    start: tuple[ContainerRecord, ...] = ()
    wake_in: float | None = None  # seconds until the soonest back-off ends
    complete: bool = False  # nothing more will run: the pod ends in its phase


def start_plan(init: Sequence[ContainerRecord], app: Sequence[ContainerRecord], policy: str,
               init_failed: bool, now: float) -> StartPlan:
    """Init containers one at a time in order (the next one waits for a sidecar to have started),
    then every app container beside the sidecars; a container in back-off waits for ``restart_at``."""
    if init_failed:
        return StartPlan(complete=True)
    start, waits = [], []

    def consider(container: ContainerRecord) -> None:
        due, wait = _due(container, now)
        if due:
            start.append(container)
        if wait is not None:
            waits.append(wait)

    for container in init:
        if container.sidecar and (container.started or container.termination is not None
                                  or container.restart_count > 0):
            if container.state not in CONTAINER_LIVE:
                consider(container)  # a sidecar that has run: restarted (with back-off), the others go on
            continue
        if not container.sidecar and container.succeeded():
            continue
        if container.state not in CONTAINER_LIVE:
            consider(container)
        return StartPlan(start=tuple(start), wake_in=min(waits, default=None))  # the next waits for this one
    for container in app:
        consider(container)
    done = not start and app_done(app, policy)
    return StartPlan(start=tuple(start), wake_in=min(waits, default=None), complete=done)


def app_done(app: Sequence[ContainerRecord], policy: str) -> bool:
    """Every app container ended and none runs again (never under restartPolicy Always)."""
    return policy != "Always" and all(c.state is CS.EXITED and not c.restarting for c in app)


def _due(container: ContainerRecord, now: float) -> tuple[bool, float | None]:
    """(start it now, seconds until it may start)."""
    if container.state is CS.PENDING:
        return True, None
    if container.state is not CS.EXITED or not container.restarting:
        return False, None
    if container.restart_at is not None and now < container.restart_at:
        return False, container.restart_at - now
    return True, None
