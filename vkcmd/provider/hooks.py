"""Lifecycle hooks (postStart, preStop) with exec, httpGet and sleep actions, as the kubelet runs them.

Exec and httpGet hooks run on the probe pool and come back as pod input (like probe
results); a sleep hook is a timer on the pod's work queue, holding no thread. The
manager decides what a result means: a failed postStart kills the container, a
finished preStop lets its SIGTERM go with what is left of the grace period.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vkcmd.probing import network_check
from vkcmd.provider.records import ContainerRecord, PodRecord
from vkcmd.runtime.probes import ProbeResult, ProbeRunner

HOOKS = ("postStart", "preStop")


class Hooks:
    """Starts hooks for the manager; results are posted as (key, run id, hook name, ProbeResult)."""

    def __init__(self, runner: ProbeRunner | None, *, post: Callable[[str, tuple], None],
                 wake: Callable[[str, float], None], pod_ip: str) -> None:
        self._runner = runner
        self._post = post
        self._wake = wake
        self._pod_ip = pod_ip

    @staticmethod
    def handler(container: ContainerRecord, which: str) -> dict[str, Any] | None:
        return ((container.spec.get("lifecycle") or {}).get(which)) or None

    def start(self, record: PodRecord, container: ContainerRecord, which: str, timeout: float, now: float) -> bool:
        """Start the container's ``which`` hook; False when it has none (or nothing can run it)."""
        handler = self.handler(container, which)
        if handler is None:
            return False
        uid, key, run_id = record.uid, container.key, container.run_id

        def done(result: ProbeResult) -> None:
            self._post(uid, (key, run_id, which, result))

        if handler.get("sleep") is not None:
            seconds = max(0.0, min(float(handler["sleep"].get("seconds") or 0), timeout))
            container.hook_sleeps[which] = now + seconds
            self._wake(uid, seconds)
            return True
        if self._runner is None:
            return False
        if handler.get("httpGet") is not None:
            ports = container.spec.get("ports") or []
            self._runner.call(lambda: network_check(handler["httpGet"], "httpGet", self._pod_ip, ports, timeout),
                              done)
            return True
        command = (handler.get("exec") or {}).get("command")
        if not command:
            done(ProbeResult(False, "hook has no handler (exec, httpGet or sleep)"))
            return True
        self._runner.submit(command, {**container.env, "VKCMD_RUN": run_id or ""}, container.cwd or "/",
                            timeout, done)
        return True

    @staticmethod
    def slept(record: PodRecord, now: float) -> list[tuple]:
        """The sleep hooks whose time has come, as results."""
        due = []
        for container in record.containers():
            for which, until in list(container.hook_sleeps.items()):
                if now >= until:
                    del container.hook_sleeps[which]
                    due.append((container.key, container.run_id, which, ProbeResult(True, "")))
        return due
