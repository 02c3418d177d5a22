"""Exec probes of running containers, for the provider: when to run them and what their results mean.

The kubelet's prober semantics: initial delay, period, timeout, success and failure
thresholds; startup gates liveness and readiness; readiness drives the container's
ready flag; liveness and startup failures end the run (restartPolicy decides what
follows). Probes run on the runtime's shared pool; results come back as pod work.
"""

from __future__ import annotations

from typing import Any

from vkcmd.machines import ContainerState as CS
from vkcmd.provider.records import ContainerRecord, PodRecord, grace_period
from vkcmd.runtime.probes import ProbeResult

NORMAL, WARNING = "Normal", "Warning"


class ProbeMixin:
    """The probe part of ``PodManager`` (uses its queue, records, sink, runtime and clock)."""

    def _run_probes(self, record: PodRecord, now: float) -> None:
        """Start the probes that are due; come back when the next one is."""
        if self._probes is None:
            return
        soonest = None
        for container in record.containers():
            if container.state is not CS.RUNNING or not container.probes:
                continue
            for kind, state in container.probes.items():
                if kind != "startup" and not container.started_ok:
                    continue  # liveness and readiness wait for the startup probe
                if kind == "startup" and container.started_ok:
                    continue
                spec = container.probe_spec(kind) or {}
                if not state.in_flight and now >= state.next_at:
                    self._start_probe(record, container, kind, spec)
                    state.in_flight = True
                    state.next_at = now + float(spec.get("periodSeconds") or 10)
                soonest = state.next_at if soonest is None else min(soonest, state.next_at)
        if soonest is not None:
            self._queue.add_after(record.uid, max(0.0, soonest - now))

    def _start_probe(self, record: PodRecord, container: ContainerRecord, kind: str, spec: dict[str, Any]) -> None:
        command = (spec.get("exec") or {}).get("command")
        uid, key, run_id = record.uid, container.key, container.run_id

        def done(result: ProbeResult) -> None:
            with self._lock:
                target = self._records.get(uid)
                if target is not None:
                    target.probe_results.append((key, run_id, kind, result))
            self._queue.add(uid)

        if not command:
            done(ProbeResult(True, "only exec probes run on vkcmd nodes; this probe is taken as passing"))
            return
        env = {**container.env, "VKCMD_RUN": run_id or ""}
        self._probes.submit(command, env, container.cwd or "/", float(spec.get("timeoutSeconds") or 1), done)

    def _apply_probe(self, record: PodRecord, key: str, run_id: str | None, kind: str,
                     result: ProbeResult) -> None:
        container = record.by_key(key)
        if container is None or container.run_id != run_id or container.state is not CS.RUNNING:
            return
        state = container.probes.get(kind)
        if state is None:
            return
        state.in_flight = False
        spec = container.probe_spec(kind) or {}
        if result.ok:
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
        label = {"startup": "Startup", "liveness": "Liveness", "readiness": "Readiness"}[kind]
        self._sink.event(record.pod, WARNING, "Unhealthy", f"{label} probe failed: {result.output.strip()}",
                         container.name)
        if state.failures < int(spec.get("failureThreshold") or 3):
            return
        if kind == "readiness":
            container.ready = False
            return
        state.failures = 0
        self._sink.event(record.pod, NORMAL, "Killing",
                         f"Container {container.name} failed {kind} probe, will be restarted", container.name)
        grace = spec.get("terminationGracePeriodSeconds")
        self._runtime.terminate(container.key, float(grace) if grace is not None else grace_period(record.pod))
