"""Pod status from container states, as the kubelet computes it (pure functions).

Given what each container is doing, build ``containerStatuses``, the phase and
the conditions. A condition keeps its ``lastTransitionTime`` while its status
stays the same, so readers (the HPA among them) see honest transition times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vkcmd.machines import ContainerState
from vkcmd.timefmt import rfc3339

CONTAINER_ID_SCHEME = "vkcmd://"


@dataclass(frozen=True)
class Termination:
    """How one run of a container ended."""

    exit_code: int
    reason: str  # Completed, Error, OOMKilled, DeadlineExceeded, ContainerCannotRun, ...
    started_at: float | None
    finished_at: float
    message: str = ""
    signal: int | None = None
    container_id: str | None = None


@dataclass(frozen=True)
class ContainerView:
    """What the status needs to know about one container right now."""

    name: str
    image: str
    state: ContainerState
    restart_count: int = 0
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    started_at: float | None = None  # of the current run, while running
    container_id: str | None = None
    image_id: str = ""
    termination: Termination | None = None  # the current run's end (state Exited)
    last_termination: Termination | None = None  # the run before (lastState)
    ready: bool = False
    started: bool | None = None
    restarting: bool = False  # Exited but another run will follow (back-off)
    sidecar: bool = False  # an init container with restartPolicy Always (runs beside the app containers)


def _terminated(term: Termination) -> dict[str, Any]:
    result: dict[str, Any] = {"exitCode": term.exit_code, "reason": term.reason,
                              "finishedAt": rfc3339(term.finished_at)}
    result["startedAt"] = rfc3339(term.started_at if term.started_at is not None else term.finished_at)
    if term.message:
        result["message"] = term.message
    if term.signal:
        result["signal"] = term.signal
    if term.container_id:
        result["containerID"] = term.container_id
    return result


def container_status(view: ContainerView) -> dict[str, Any]:
    """One entry of ``containerStatuses``."""
    if view.state is ContainerState.RUNNING:
        state: dict[str, Any] = {"running": {"startedAt": rfc3339(view.started_at or 0)}}
        last = view.last_termination
    elif view.state is ContainerState.EXITED and view.termination and not view.restarting:
        state = {"terminated": _terminated(view.termination)}
        last = view.last_termination
    else:
        waiting: dict[str, Any] = {"reason": view.waiting_reason}
        if view.waiting_message:
            waiting["message"] = view.waiting_message
        state = {"waiting": waiting}
        last = view.termination if view.restarting else view.last_termination
    status: dict[str, Any] = {
        "name": view.name,
        "image": view.image,
        "imageID": view.image_id,
        "ready": bool(view.ready and view.state is ContainerState.RUNNING),
        "restartCount": view.restart_count,
        "started": bool(view.started if view.started is not None else view.state is ContainerState.RUNNING),
        "state": state,
        "lastState": {"terminated": _terminated(last)} if last else {},
    }
    if view.container_id:
        status["containerID"] = view.container_id
    return status


def pod_phase(restart_policy: str, init: Sequence[ContainerView], app: Sequence[ContainerView],
              init_failed: bool = False) -> str:
    """The phase, by the kubelet's rules; as since 1.27, never terminal while a sidecar still runs
    (the main containers decide Succeeded or Failed, reported once every container has stopped)."""
    phase = _phase_of_containers(restart_policy, init, app, init_failed)
    if phase in ("Succeeded", "Failed") and any(
            view.sidecar and view.state in (ContainerState.RUNNING, ContainerState.STAGING) for view in init):
        return "Running"
    return phase


def _phase_of_containers(restart_policy: str, init: Sequence[ContainerView], app: Sequence[ContainerView],
                         init_failed: bool) -> str:
    if init_failed:
        return "Failed"
    if any(not _init_done(view) for view in init):
        return "Pending"
    running = stopped = succeeded = waiting = 0
    for view in app:
        if view.state is ContainerState.RUNNING:
            running += 1
        elif view.state is ContainerState.EXITED and view.termination is not None:
            stopped += 1
            if view.termination.exit_code == 0:
                succeeded += 1
        elif view.last_termination is not None:
            stopped += 1  # waiting to run again after a termination
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"  # OnFailure: a failed container will run again
    return "Pending"


def _init_done(view: ContainerView) -> bool:
    """A regular init container succeeded; a sidecar has started (once is enough)."""
    if view.sidecar:
        return bool(view.started and view.state is ContainerState.RUNNING) or view.termination is not None \
            or view.last_termination is not None
    return (view.state is ContainerState.EXITED and view.termination is not None
            and view.termination.exit_code == 0 and not view.restarting)


@dataclass
class Conditions:
    """The four pod conditions with their transition times carried over."""

    previous: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def build(self, now: float, values: Iterable[tuple[str, bool, str, str]]) -> list[dict[str, Any]]:
        result = []
        for kind, ok, reason, message in values:
            status = "True" if ok else "False"
            before = self.previous.get(kind) or {}
            since = before.get("lastTransitionTime") if before.get("status") == status else None
            condition: dict[str, Any] = {"type": kind, "status": status,
                                         "lastTransitionTime": since or rfc3339(now), "lastProbeTime": None}
            if not ok and reason:
                condition["reason"] = reason
                if message:
                    condition["message"] = message
            result.append(condition)
        return result


def pod_conditions(previous: Sequence[Mapping[str, Any]], now: float, init: Sequence[ContainerView],
                   app: Sequence[ContainerView], phase: str, sandbox_ready: bool = True,
                   disruption: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """PodReadyToStartContainers, PodScheduled, Initialized, ContainersReady, Ready; and
    DisruptionTarget (reason, message) when the node ends the pod, as the kubelet's shutdown manager."""
    by_type = {c.get("type"): c for c in previous}
    initialized = all(_init_done(view) for view in init)
    not_ready = [view.name for view in [*(v for v in init if v.sidecar), *app]
                 if not (view.ready and view.state is ContainerState.RUNNING)]
    terminal = phase in ("Succeeded", "Failed")
    containers_ready = not not_ready and not terminal
    reason = "PodCompleted" if terminal else "ContainersNotReady"
    message = "" if terminal else f"containers with unready status: [{' '.join(not_ready)}]"
    init_pending = [view.name for view in init if not _init_done(view)]
    built = Conditions(by_type).build(now, [
        ("PodReadyToStartContainers", sandbox_ready, "", ""),
        ("PodScheduled", True, "", ""),
        ("Initialized", initialized or terminal, "ContainersNotInitialized",
         f"containers with incomplete status: [{' '.join(init_pending)}]"),
        ("ContainersReady", containers_ready, reason, message),
        ("Ready", containers_ready, reason, message),
    ])
    if disruption is not None:
        before = by_type.get("DisruptionTarget") or {}
        since = before.get("lastTransitionTime") if before.get("status") == "True" else None
        built.append({"type": "DisruptionTarget", "status": "True", "reason": disruption[0],
                      "message": disruption[1], "lastTransitionTime": since or rfc3339(now), "lastProbeTime": None})
    return built


def pod_status(pod: Mapping[str, Any], *, now: float, start_time: float, pod_ip: str,
               init: Sequence[ContainerView], app: Sequence[ContainerView], init_failed: bool = False,
               reason: str = "", message: str = "", phase: str | None = None, sandbox_ready: bool = True,
               disruption: tuple[str, str] | None = None) -> dict[str, Any]:
    """The whole status of ``pod``; ``phase``/``reason`` override the computed phase (deadline, drain)."""
    spec = pod.get("spec") or {}
    previous = pod.get("status") or {}
    computed = phase or pod_phase(spec.get("restartPolicy", "Always"), init, app, init_failed)
    status: dict[str, Any] = {
        "phase": computed,
        "conditions": pod_conditions(previous.get("conditions") or [], now, init, app, computed, sandbox_ready,
                                     disruption),
        "hostIP": pod_ip, "hostIPs": [{"ip": pod_ip}],
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": rfc3339(start_time),
        "containerStatuses": [container_status(view) for view in app],
    }
    if init:
        status["initContainerStatuses"] = [container_status(view) for view in init]
    if previous.get("qosClass"):
        status["qosClass"] = previous["qosClass"]
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return status
