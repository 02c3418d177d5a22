"""The Prober's arithmetic on real records: thresholds, startup gating, liveness kills (no processes)."""

from __future__ import annotations

from vkcmd.machines import ContainerEvent as CE
from vkcmd.provider.probing import Prober
from vkcmd.provider.records import new_record
from vkcmd.runtime.probes import ProbeResult, ProbeRunner


def running_pod(**probes):
    body = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [{"name": "c", "command": ["true"], **probes}]}}
    record = new_record(body, 0.0, ())
    container = record.app[0]
    container.machine.fire(CE.STAGE)
    container.machine.fire(CE.STARTED)
    container.run_id = "r1"
    container.reset_probes(100.0)
    return record, container


class Calls:
    def __init__(self):
        self.events, self.kills, self.wakes, self.posted = [], [], [], []


def prober(calls, runner=None):
    return Prober(runner, post=lambda uid, item: calls.posted.append(item),
                  wake=lambda uid, delay: calls.wakes.append(delay),
                  event=lambda pod, kind, reason, message, container=None: calls.events.append((reason, message)),
                  terminate=lambda record, container, grace: calls.kills.append((container.name, grace)),
                  clock=lambda: 200.0, pod_ip="127.0.0.1")


def result(ok, kind, run="r1"):
    return ("u/c", run, kind, ProbeResult(ok, "" if ok else "nope"))


def test_readiness_thresholds():
    record, container = running_pod(readinessProbe={"exec": {"command": ["x"]}, "successThreshold": 2,
                                                    "failureThreshold": 2})
    calls = Calls()
    probe = prober(calls)
    assert not container.ready
    probe.apply(record, result(True, "readiness"))
    assert not container.ready  # one success of two
    probe.apply(record, result(True, "readiness"))
    assert container.ready
    probe.apply(record, result(False, "readiness"))
    assert container.ready and calls.events[-1][0] == "Unhealthy"  # one failure of two
    probe.apply(record, result(False, "readiness"))
    assert not container.ready and not calls.kills  # readiness never kills
    probe.apply(record, result(True, "readiness", run="old"))
    assert not container.ready  # a result of an earlier run is ignored


def test_liveness_kills_after_its_threshold_with_the_probe_grace():
    record, container = running_pod(livenessProbe={"exec": {"command": ["x"]}, "failureThreshold": 3,
                                                   "terminationGracePeriodSeconds": 4})
    calls = Calls()
    probe = prober(calls)
    for _ in range(2):
        probe.apply(record, result(False, "liveness"))
    assert not calls.kills
    probe.apply(record, result(False, "liveness"))
    assert calls.kills == [("c", 4.0)]
    assert ("Killing", "Container c failed liveness probe, will be restarted") in calls.events


def test_startup_gates_liveness_and_readiness():
    record, container = running_pod(startupProbe={"exec": {"command": ["x"]}, "failureThreshold": 2},
                                    readinessProbe={"exec": {"command": ["x"]}},
                                    livenessProbe={"exec": {"command": ["x"]}, "initialDelaySeconds": 500})
    calls = Calls()
    runner = ProbeRunner(workers=1)
    try:
        probe = prober(calls, runner)
        probe.run_due(record, 100.0)
        assert [s.in_flight for s in container.probes.values()] == [True, False, False]  # only startup
        probe.apply(record, result(True, "startup"))
        assert container.started_ok
        probe.run_due(record, 200.0)
        assert container.probes["readiness"].in_flight  # now the others run
        assert not container.probes["liveness"].in_flight  # its own initial delay (from the start) not over
    finally:
        runner.stop()


def test_a_failing_startup_probe_kills():
    record, container = running_pod(startupProbe={"exec": {"command": ["x"]}, "failureThreshold": 2})
    calls = Calls()
    probe = prober(calls)
    probe.apply(record, result(False, "startup"))
    probe.apply(record, result(False, "startup"))
    assert calls.kills == [("c", 30.0)] and not container.started_ok


def test_a_success_with_a_warning_posts_a_probe_warning():
    record, container = running_pod(readinessProbe={"exec": {"command": ["x"]}})
    calls = Calls()
    prober(calls).apply(record, ("u/c", "r1", "readiness", ProbeResult(True, "", warning="redirected away")))
    assert container.ready and calls.events == [("ProbeWarning", "Readiness probe warning: redirected away")]
