"""Probes of running containers (exec, httpGet, tcpSocket, grpc), for the provider: when to run them and what their results mean.

The kubelet's prober semantics: initial delay, period, timeout, success and failure
thresholds; startup gates liveness and readiness; readiness drives the container's
ready flag; liveness and startup failures end the run (restartPolicy decides what
follows). Probes run on the runtime's shared pool; results come back as pod input.
It knows the records it is given; the queue, sink and runtime are passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vkcmd.machines import CONTAINER_LIVE
from vkcmd.probing import network_check
from vkcmd.provider.records import ContainerRecord, PodRecord, grace_period
from vkcmd.runtime.probes import ProbeResult, ProbeRunner

NORMAL, WARNING = "Normal", "Warning"
NETWORK_ACTIONS = ("httpGet", "tcpSocket", "grpc")
LABELS = {"startup": "Startup", "liveness": "Liveness", "readiness": "Readiness"}

ProbeItem = tuple[str, "str | None", str, ProbeResult]  # (runtime key, run id, kind, result)


class Prober:
    """The probes of every pod, owned by the manager and called on the pod's worker.

    ``post(uid, item)`` hands a finished probe's result back as pod input (from a probe
    thread; must not block); ``wake(uid, delay)`` asks for a sync of the pod later.
    """

    def __init__(self, runner: ProbeRunner | None, *, post: Callable[[str, ProbeItem], None],
                 wake: Callable[[str, float], None], event: Callable[..., None],
                 terminate: Callable[[PodRecord, ContainerRecord, float], None], clock: Callable[[], float], pod_ip: str) -> None:
        self._runner = runner
        self._pod_ip = pod_ip
        self._post = post
        self._wake = wake
        self._event = event
        self._terminate = terminate
        self._clock = clock

    def run_due(self, record: PodRecord, now: float) -> None:
        """Start the probes that are due; come back when the next one is."""
        if self._runner is None:
            return
        soonest = None
        for container in record.containers():
            if container.state not in CONTAINER_LIVE or not container.probes or container.post_start_pending:
                continue
            for kind, state in container.probes.items():
                if kind != "startup" and not container.started_ok:
                    continue  # liveness and readiness wait for the startup probe
                if kind == "startup" and container.started_ok:
                    continue
                spec = container.probe_spec(kind) or {}
                if not state.in_flight and now >= state.next_at:
                    self._start(record, container, kind, spec)
                    state.in_flight = True
                    state.next_at = now + float(spec.get("periodSeconds") or 10)
                soonest = state.next_at if soonest is None else min(soonest, state.next_at)
        if soonest is not None:
            self._wake(record.uid, max(0.0, soonest - now))

    def _start(self, record: PodRecord, container: ContainerRecord, kind: str, spec: dict[str, Any]) -> None:
        uid, key, run_id = record.uid, container.key, container.run_id
        timeout = float(spec.get("timeoutSeconds") or 1)

        def done(result: ProbeResult) -> None:
            self._post(uid, (key, run_id, kind, result))

        action = next((name for name in NETWORK_ACTIONS if spec.get(name) is not None), None)
        if action is not None:
            ports = container.spec.get("ports") or []
            self._runner.call(lambda: network_check(spec[action], action, self._pod_ip, ports, timeout), done)
            return
        command = (spec.get("exec") or {}).get("command")
        if not command:
            done(ProbeResult(False, "probe has no handler (exec, httpGet, tcpSocket or grpc)"))
            return
        env = {**container.env, "VKCMD_RUN": run_id or ""}
        self._runner.submit(command, env, container.cwd or "/", timeout, done)

    def apply(self, record: PodRecord, item: ProbeItem) -> None:
        """Count one result: thresholds flip readiness and startup; liveness and startup failures
        end the run (restartPolicy decides what follows)."""
        key, run_id, kind, result = item
        container = record.by_key(key)
        if container is None or container.run_id != run_id or container.state not in CONTAINER_LIVE:
            return
        state = container.probes.get(kind)
        if state is None:
            return
        state.in_flight = False
        spec = container.probe_spec(kind) or {}
        if result.ok:
            if result.warning:
                self._event(record.pod, WARNING, "ProbeWarning", f"{LABELS[kind]} probe warning: {result.warning}",
                            container.name)
            state.successes, state.failures = state.successes + 1, 0
            if state.successes >= int(spec.get("successThreshold") or 1):
                if kind == "readiness":
                    container.ready = True
                elif kind == "startup":
                    container.started_ok = True
                    now = self._clock()
                    for other in container.probes.values():  # the others start counting now
                        other.next_at = max(other.next_at, now)
            return
        state.failures, state.successes = state.failures + 1, 0
        self._event(record.pod, WARNING, "Unhealthy", f"{LABELS[kind]} probe failed: {result.output.strip()}",
                    container.name)
        if state.failures < int(spec.get("failureThreshold") or 3):
            return
        if kind == "readiness":
            container.ready = False
            return
        state.failures = 0
        self._event(record.pod, NORMAL, "Killing",
                    f"Container {container.name} failed {kind} probe, will be restarted", container.name)
        grace = spec.get("terminationGracePeriodSeconds")
        self._terminate(record, container, float(grace) if grace is not None else grace_period(record.pod))
