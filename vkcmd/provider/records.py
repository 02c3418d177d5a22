"""What the provider remembers about each pod and container between syncs.

A record is changed only by the worker that holds its pod's key (the work
queue guarantees one at a time); other threads hand it input through the
pending fields under the lock of the ``PodTable`` that holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fsm import Machine
from vkcmd.machines import CONTAINER, CONTAINER_LIVE, POD, POD_DONE, ContainerState, PodState
from vkcmd.pods.podstatus import ContainerView, Termination


PROBE_KINDS = ("startup", "liveness", "readiness")


@dataclass
class ProbeState:
    """Counters of one probe of one container run, as the kubelet's prober keeps them."""

    next_at: float
    successes: int = 0
    failures: int = 0
    in_flight: bool = False


@dataclass
class ContainerRecord:
    """One container of a pod across its runs."""

    name: str
    spec: dict[str, Any]
    init: bool
    machine: Machine
    key: str  # the runtime's key of this container's runs
    run_id: str | None = None
    started_at: float | None = None
    container_id: str | None = None
    image_id: str = ""
    container_dir: str | None = None
    restart_count: int = 0
    crashes: int = 0
    restart_at: float | None = None  # back-off ends (monotonic-free wall time)
    restarting: bool = False
    start_failures: int = 0  # consecutive unexpected staging/launch failures (their retry backs off)
    termination: Termination | None = None
    last_termination: Termination | None = None
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    env: dict[str, str] = field(default_factory=dict, repr=False)  # of the current run, for exec probes
    cwd: str = ""
    probes: dict[str, ProbeState] = field(default_factory=dict)
    ready: bool = True  # readiness probe verdict (True when there is none)
    started_ok: bool = True  # startup probe passed (True when there is none)
    post_start_pending: bool = False  # its postStart hook runs: not started, not probed yet
    hook_sleeps: dict[str, float] = field(default_factory=dict)  # hook -> when its sleep action ends
    prestop: tuple[float, float] | None = None  # (began, grace) of a preStop before a probe's kill

    def probe_spec(self, kind: str) -> dict[str, Any] | None:
        return self.spec.get(f"{kind}Probe")

    def reset_probes(self, started_at: float) -> None:
        """A new run starts: probes begin after their initial delays; not ready until proven."""
        self.probes = {kind: ProbeState(next_at=started_at + float(spec.get("initialDelaySeconds") or 0))
                       for kind in PROBE_KINDS if (spec := self.probe_spec(kind))}
        self.ready = "readiness" not in self.probes
        self.started_ok = "startup" not in self.probes

    @property
    def state(self) -> ContainerState:
        return self.machine.state

    def view(self) -> ContainerView:
        return ContainerView(
            name=self.name, image=self.spec.get("image", ""), state=self.state,
            restart_count=self.restart_count, waiting_reason=self.waiting_reason,
            waiting_message=self.waiting_message, started_at=self.started_at,
            container_id=self.container_id, image_id=self.image_id, termination=self.termination,
            last_termination=self.last_termination,
            ready=self.started and self.ready,
            started=self.started,
            restarting=self.restarting, sidecar=self.sidecar,
        )

    @property
    def sidecar(self) -> bool:
        """An init container with restartPolicy Always: started in order, then runs beside the app."""
        return self.init and self.spec.get("restartPolicy") == "Always"

    @property
    def started(self) -> bool:
        """Running and past its startup probe (what the next init container waits for)."""
        return self.state is ContainerState.RUNNING and self.started_ok and not self.post_start_pending

    def succeeded(self) -> bool:
        return (self.state is ContainerState.EXITED and self.termination is not None
                and self.termination.exit_code == 0 and not self.restarting)


@dataclass
class Ending:
    """Why and how a pod's containers are being stopped."""

    reason: str  # "" for a deletion (statuses keep the containers' own reasons)
    message: str
    grace: float
    phase: str | None  # the phase the pod ends in (None: computed from the containers)
    delete: bool  # remove the workspace and the API object afterwards
    signalled: set[str] = field(default_factory=set)  # runtime keys already told to terminate
    disruption: bool = False  # the node ends the pod (a drain): the DisruptionTarget condition
    prestop: dict[str, float] = field(default_factory=dict)  # runtime key -> when its preStop hook began


@dataclass
class PodRecord:
    """One pod bound to this node, as the provider drives it.

    ``machine`` (the pod machine) and ``ending`` (the details of Ending, kept once Ended for
    the final phase) change only on the pod's worker. Other threads hand input in through
    the pending fields below, under the PodTable's lock; the worker takes them at its sync.
    """

    uid: str
    pod: dict[str, Any]
    start_time: float
    init: list[ContainerRecord]
    app: list[ContainerRecord]
    machine: Machine
    ending: Ending | None = None
    init_failed: bool = False
    status: dict[str, Any] | None = None
    start_observed: bool = False  # pod start latency recorded
    # pending input, under the PodTable's lock
    removed: bool = False  # gone from the API: nothing more is written there (set once, never cleared)
    exits: list[Any] = field(default_factory=list)  # ExitReports not yet applied
    probe_results: list[Any] = field(default_factory=list)  # (key, run_id, kind, ProbeResult) not yet applied
    drain: tuple[str, str, bool] | None = None  # (reason, message, fast) of a node drain not yet applied
    hurry: bool = False  # a drain asked to cut every grace period short

    @property
    def state(self) -> PodState:
        return self.machine.state

    @property
    def done(self) -> bool:
        """Nothing more will run (a terminal phase, or ended by a deadline or drain)."""
        return self.state in POD_DONE

    @property
    def namespace(self) -> str:
        return self.pod["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def containers(self) -> Iterable[ContainerRecord]:
        yield from self.init
        yield from self.app

    def container(self, name: str) -> ContainerRecord | None:
        return next((c for c in self.containers() if c.name == name), None)

    def by_key(self, key: str) -> ContainerRecord | None:
        return next((c for c in self.containers() if c.key == key), None)

    def live(self) -> list[ContainerRecord]:
        return [c for c in self.containers() if c.state in CONTAINER_LIVE]


def grace_period(pod: dict[str, Any]) -> float:
    """The pod's terminationGracePeriodSeconds (30 when unset, as the API server defaults it)."""
    value = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return float(30 if value is None else value)


def new_record(pod: dict[str, Any], now: float, observers: Iterable[Callable]) -> PodRecord:
    """A record with an Active pod machine and one machine per container, all Pending."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    uid = meta["uid"]

    def make(container: dict[str, Any], init: bool) -> ContainerRecord:
        name = container["name"]
        machine = CONTAINER.new(f"{meta['namespace']}/{meta['name']}/{name}", observers=observers)
        return ContainerRecord(name=name, spec=container, init=init, machine=machine, key=f"{uid}/{name}")

    return PodRecord(
        uid=uid, pod=pod, start_time=now,
        init=[make(c, True) for c in spec.get("initContainers") or []],
        app=[make(c, False) for c in spec.get("containers") or []],
        machine=POD.new(f"{meta['namespace']}/{meta['name']}", observers=observers),
    )
