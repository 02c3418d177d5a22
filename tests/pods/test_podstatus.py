"""Pod status building: phases by the kubelet's rules, conditions with honest times."""

import pytest

from vkcmd.machines import ContainerState as S
from vkcmd.pods.podstatus import ContainerView, Termination, container_status, pod_phase, pod_status

T0 = 1_800_000_000.0


def exited(name, code, restarting=False, last=None):
    return ContainerView(name, "img", S.EXITED, termination=Termination(code, "Completed" if code == 0 else "Error",
                                                                         T0, T0 + 5), restarting=restarting,
                         last_termination=last)


def running(name, ready=True):
    return ContainerView(name, "img", S.RUNNING, started_at=T0, ready=ready, container_id="vkcmd://42")


def waiting(name, reason="ContainerCreating"):
    return ContainerView(name, "img", S.PENDING, waiting_reason=reason)


@pytest.mark.parametrize("policy, app, phase", [
    ("Never", [waiting("a")], "Pending"),
    ("Never", [running("a"), waiting("b")], "Pending"),
    ("Never", [running("a"), exited("b", 0)], "Running"),
    ("Never", [exited("a", 0), exited("b", 0)], "Succeeded"),
    ("Never", [exited("a", 0), exited("b", 3)], "Failed"),
    ("OnFailure", [exited("a", 0)], "Succeeded"),
    ("OnFailure", [exited("a", 1, restarting=True)], "Running"),
    ("Always", [exited("a", 0, restarting=True)], "Running"),
])
def test_phase(policy, app, phase):
    assert pod_phase(policy, [], app) == phase


def test_init_containers_gate_the_phase():
    assert pod_phase("Always", [running("init")], [waiting("a")]) == "Pending"
    assert pod_phase("Always", [exited("init", 0)], [running("a")]) == "Running"
    assert pod_phase("Never", [exited("init", 1)], [waiting("a")], init_failed=True) == "Failed"


def test_container_status_shapes():
    run = container_status(running("a"))
    assert run["state"] == {"running": {"startedAt": "2027-01-15T08:00:00Z"}}
    assert run["ready"] and run["started"] and run["containerID"] == "vkcmd://42"
    done = container_status(exited("a", 3))
    assert done["state"]["terminated"]["exitCode"] == 3 and done["state"]["terminated"]["reason"] == "Error"
    assert not done["ready"]
    backoff = container_status(ContainerView("a", "img", S.EXITED, waiting_reason="CrashLoopBackOff",
                                             termination=Termination(1, "Error", T0, T0 + 1), restarting=True,
                                             restart_count=2))
    assert backoff["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert backoff["lastState"]["terminated"]["exitCode"] == 1 and backoff["restartCount"] == 2

def test_no_terminal_phase_while_a_sidecar_still_runs():
    """The main containers decide the outcome; it is reported once the sidecar has stopped too (kubelet >= 1.27)."""
    import dataclasses

    side = dataclasses.replace(running("side"), sidecar=True, started=True)
    stopped_side = dataclasses.replace(exited("side", 143), sidecar=True, started=True)
    assert pod_phase("Never", [side], [exited("a", 0)]) == "Running"
    assert pod_phase("Never", [side], [exited("a", 1)]) == "Running"
    assert pod_phase("Never", [stopped_side], [exited("a", 0)]) == "Succeeded"
    assert pod_phase("Never", [stopped_side], [exited("a", 1)]) == "Failed"
    assert pod_phase("Never", [side], [running("a")]) == "Running"



def test_conditions_keep_transition_times_while_unchanged():
    pod = {"spec": {"restartPolicy": "Never", "containers": [{"name": "a"}]}, "status": {}}
    first = pod_status(pod, now=T0, start_time=T0, pod_ip="10.0.0.1", init=[], app=[waiting("a")])
    ready = {c["type"]: c for c in first["conditions"]}
    assert ready["Ready"]["status"] == "False" and ready["Ready"]["reason"] == "ContainersNotReady"
    pod["status"] = first
    second = pod_status(pod, now=T0 + 30, start_time=T0, pod_ip="10.0.0.1", init=[], app=[running("a")])
    by_type = {c["type"]: c for c in second["conditions"]}
    assert by_type["Ready"]["status"] == "True"
    assert by_type["Ready"]["lastTransitionTime"] == "2027-01-15T08:00:30Z"
    assert by_type["PodScheduled"]["lastTransitionTime"] == "2027-01-15T08:00:00Z"
    assert second["startTime"] == "2027-01-15T08:00:00Z"
    assert second["podIP"] == second["hostIP"] == "10.0.0.1"
    pod["status"] = second
    third = pod_status(pod, now=T0 + 90, start_time=T0, pod_ip="10.0.0.1", init=[], app=[running("a")])
    assert third["conditions"] == second["conditions"]
