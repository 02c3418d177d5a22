"""The provider's decisions, table-driven and without processes: restarts, back-off, deadline, ending."""

from __future__ import annotations

import itertools

import pytest

from vkcmd.machines import ContainerEvent as CE, ContainerState as CS
from vkcmd.pods.podstatus import Termination
from vkcmd.provider import decide
from vkcmd.provider.records import Ending, new_record

BACKOFF = (10.0, 300.0)


def pod(policy="Never", deadline=None, deleted=None, grace=None, init=0, apps=1):
    spec = {"restartPolicy": policy,
            "initContainers": [{"name": f"i{n}", "command": ["true"]} for n in range(init)],
            "containers": [{"name": f"c{n}", "command": ["true"]} for n in range(apps)]}
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    meta = {"name": "p", "namespace": "ns", "uid": "u1"}
    if deleted is not None:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
        meta["deletionGracePeriodSeconds"] = deleted
    return {"metadata": meta, "spec": spec}


# --- every restartPolicy x exit x back-off x ending -------------------------------------------

CASES = list(itertools.product(["Always", "OnFailure", "Never"], [0, 1, 137], [False, True],
                               [(0, 5.0), (1, 5.0), (2, 5.0), (4, 5.0), (9, 5.0), (3, 700.0)]))


@pytest.mark.parametrize("policy, code, init, history", CASES)
@pytest.mark.parametrize("ending", [False, True])
def test_after_exit(policy, code, init, history, ending):
    crashes, ran = history
    got = decide.after_exit(policy, init, code, ran, crashes, BACKOFF, ending)
    if ending:
        assert got == decide.AfterExit(False, crashes, 0.0)
        return
    if init:
        again = code != 0 and policy != "Never"
        assert got.init_failed == (code != 0 and policy == "Never")
    else:
        again = policy == "Always" or (policy == "OnFailure" and code != 0)
        assert not got.init_failed
    assert got.again is again
    if not again:
        assert got.delay == 0.0 and got.crashes == crashes
        return
    expected_crashes = 1 if ran >= 600 else crashes + 1
    assert got.crashes == expected_crashes
    # the first restart is immediate; then 10 s doubling, capped at 300 s
    expected_delay = 0.0 if expected_crashes <= 1 else min(10.0 * 2 ** (expected_crashes - 2), 300.0)
    assert got.delay == expected_delay


def test_back_off_sequence_caps_at_the_maximum():
    crashes, delays = 0, []
    for _ in range(9):
        got = decide.after_exit("Always", False, 1, 1.0, crashes, BACKOFF, False)
        crashes = got.crashes
        delays.append(got.delay)
    assert delays == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]


# --- deadline and ending ------------------------------------------------------------------------

@pytest.mark.parametrize("deadline, elapsed, active, hit, wake", [
    (None, 1000, True, False, None),
    (30, 10, True, False, 20.0),
    (30, 30, True, True, None),
    (30, 45, True, True, None),
    (30, 45, False, False, None),  # an ended pod is never failed by its deadline
])
def test_deadline(deadline, elapsed, active, hit, wake):
    check = decide.check_ending(pod(deadline=deadline), removed=False, current=None, active=active,
                                start_time=100.0, now=100.0 + elapsed)
    assert check.deadline_hit is hit and check.begun is hit
    assert check.deadline_in == wake
    if hit:
        assert check.ending == Ending("DeadlineExceeded", decide.DEADLINE_MESSAGE, 30.0, "Failed", delete=False)
    else:
        assert check.ending is None


def test_a_pod_already_ending_is_not_failed_by_its_deadline_too():
    drain = Ending("WalltimeExpired", "m", 5.0, "Failed", delete=False)
    check = decide.check_ending(pod(deadline=1), removed=False, current=drain, active=False, start_time=0, now=50)
    assert check.ending is drain and not check.begun and not check.deadline_hit


@pytest.mark.parametrize("current, deleted, removed, grace, reason, phase, fresh", [
    (None, 7, False, 7.0, "", None, True),  # a deletion takes its deletionGracePeriodSeconds
    (None, None, True, 30.0, "", None, True),  # removed from the API: the pod's own grace
    (Ending("Drain", "m", 5.0, "Failed", False), 20, False, 5.0, "Drain", "Failed", True),  # never longer
    (Ending("Drain", "m", 50.0, "Failed", False), 20, False, 20.0, "Drain", "Failed", True),
    (Ending("", "", 20.0, None, True), 20, False, 20.0, "", None, False),  # the same deletion again
    (Ending("", "", 20.0, None, True), 0, False, 0.0, "", None, False),  # a second delete, shorter: told again
])
def test_deletion(current, deleted, removed, grace, reason, phase, fresh):
    if current is not None:
        current.signalled.add("u1/c0")
    check = decide.check_ending(pod(deleted=deleted), removed=removed, current=current, active=current is None,
                                start_time=0, now=1)
    got = check.ending
    assert got.delete and got.grace == grace and got.reason == reason and got.phase == phase
    assert check.begun is fresh
    if current is not None and got.grace < current.grace:
        assert not got.signalled  # every container is told again with the shorter grace
    elif current is not None and not fresh:
        assert got is current


@pytest.mark.parametrize("current, fast, grace", [
    (None, False, 30.0), (None, True, 0.0),
    (Ending("DeadlineExceeded", "m", 30.0, "Failed", False), True, 0.0),
])
def test_a_drain_ends_the_pod_failed_with_its_reason(current, fast, grace):
    got = decide.drain_ending(pod(), current, "WalltimeExpired", "walltime", fast)
    assert got == Ending("WalltimeExpired", "walltime", grace, "Failed", delete=False, disruption=True)


def test_a_drain_keeps_a_deletion_in_progress_and_hurry_cuts_the_grace():
    deletion = Ending("", "", 30.0, None, True, signalled={"u1/c0"})
    assert decide.drain_ending(pod(), deletion, "WalltimeExpired", "walltime", False) is None
    assert decide.hurried(deletion) == Ending("", "", 0.0, None, True)


# --- what to start and what to stop -------------------------------------------------------------

def record(spec_pod, states):
    """A record whose containers are in ``states`` (name -> (state, exit code, restarting, restart_at))."""
    made = new_record(spec_pod, 0.0, ())
    for container in made.containers():
        state, code, restarting, restart_at = states.get(container.name, (CS.PENDING, None, False, None))
        path = {CS.PENDING: [], CS.STAGING: [CE.STAGE], CS.RUNNING: [CE.STAGE, CE.STARTED],
                CS.EXITED: [CE.STAGE, CE.STARTED, CE.EXITED]}[state]
        for event in path:
            container.machine.fire(event)
        if code is not None:
            container.termination = Termination(code, "Completed" if code == 0 else "Error", 0.0, 1.0)
        container.restarting, container.restart_at = restarting, restart_at
    return made


EXITED_OK, EXITED_BAD = (CS.EXITED, 0, False, None), (CS.EXITED, 1, False, None)


@pytest.mark.parametrize("init, apps, states, now, start, wake, complete", [
    (0, 1, {}, 0, ["c0"], None, False),
    (2, 1, {}, 0, ["i0"], None, False),  # init containers one at a time, in order
    (2, 1, {"i0": EXITED_OK}, 0, ["i1"], None, False),
    (2, 1, {"i0": (CS.RUNNING, None, False, None)}, 0, [], None, False),
    (2, 1, {"i0": EXITED_OK, "i1": EXITED_OK}, 0, ["c0"], None, False),
    (1, 1, {"i0": (CS.EXITED, 1, True, 50.0)}, 20, [], 30.0, False),  # init in back-off
    (0, 2, {"c0": (CS.EXITED, 1, True, 50.0)}, 20, ["c1"], 30.0, False),
    (0, 1, {"c0": (CS.EXITED, 1, True, 50.0)}, 60, ["c0"], None, False),  # back-off over
    (0, 2, {"c0": EXITED_OK, "c1": EXITED_BAD}, 0, [], None, True),
    (0, 2, {"c0": EXITED_OK, "c1": (CS.RUNNING, None, False, None)}, 0, [], None, False),
    (0, 1, {"c0": (CS.STAGING, None, False, None)}, 0, [], None, False),
])
def test_start_plan(init, apps, states, now, start, wake, complete):
    made = record(pod("OnFailure", init=init, apps=apps), states)
    plan = decide.start_plan(made.init, made.app, "OnFailure", False, now)
    assert [c.name for c in plan.start] == start
    assert plan.wake_in == wake and plan.complete is complete


def test_a_failed_init_container_completes_the_pod_and_always_never_completes():
    made = record(pod("Never", init=1), {"i0": EXITED_BAD})
    assert decide.start_plan(made.init, made.app, "Never", True, 0).complete
    done = record(pod("Always"), {"c0": EXITED_OK})
    assert not decide.app_done(done.app, "Always") and decide.app_done(done.app, "Never")


def test_end_plan_abandons_the_waiting_and_tells_the_live_once():
    made = record(pod(apps=4), {"c0": (CS.RUNNING, None, False, None), "c1": (CS.RUNNING, None, False, None),
                                "c2": (CS.STAGING, None, False, None), "c3": EXITED_OK})
    ending = Ending("", "", 30.0, None, True, signalled={"u1/c1"})
    plan = decide.end_plan(list(made.containers()), ending)
    assert [c.name for c in plan.abandon] == ["c2"]
    assert [c.name for c in plan.terminate] == ["c0"]
    assert not plan.settled
    settled = record(pod(apps=2), {"c0": EXITED_OK})
    assert decide.end_plan(list(settled.containers()), ending).settled


# --- sidecars (init containers with restartPolicy Always) ---------------------------------------

def sidecar_pod(policy="Never"):
    made = pod(policy, init=2, apps=1)
    made["spec"]["initContainers"][0]["restartPolicy"] = "Always"
    return made


@pytest.mark.parametrize("states, start, started_ok", [
    ({}, ["i0"], True),  # the sidecar first
    ({"i0": (CS.RUNNING, None, False, None)}, [], False),  # running but not started (startup probe): wait
    ({"i0": (CS.RUNNING, None, False, None)}, ["i1"], True),  # started: the next init container
    ({"i0": (CS.RUNNING, None, False, None), "i1": EXITED_OK}, ["c0"], True),  # then the app, beside it
    ({"i0": (CS.EXITED, 143, True, None), "i1": EXITED_OK, "c0": (CS.RUNNING, None, False, None)},
     ["i0"], True),  # a sidecar that ended is restarted while the app runs
])
def test_sidecars_start_in_order_and_the_next_waits_for_started(states, start, started_ok):
    made = record(sidecar_pod(), states)
    made.init[0].started_ok = started_ok
    plan = decide.start_plan(made.init, made.app, "Never", False, 0)
    assert [c.name for c in plan.start] == start and not plan.complete


def test_a_sidecar_always_restarts_and_the_pod_completes_with_its_main_containers():
    assert decide.after_exit("Never", True, 0, 5.0, 0, BACKOFF, False, sidecar=True).again
    assert not decide.after_exit("Never", True, 0, 5.0, 0, BACKOFF, True, sidecar=True).again
    made = record(sidecar_pod(), {"i0": (CS.RUNNING, None, False, None), "i1": EXITED_OK, "c0": EXITED_OK})
    assert decide.start_plan(made.init, made.app, "Never", False, 0).complete


def test_sidecars_are_stopped_after_the_main_containers():
    made = record(sidecar_pod(), {"i0": (CS.RUNNING, None, False, None), "i1": EXITED_OK,
                                  "c0": (CS.RUNNING, None, False, None)})
    ending = decide.sidecars_ending(made.pod)
    assert [c.name for c in decide.end_plan(list(made.containers()), ending).terminate] == ["c0"]
    made.app[0].machine.fire(CE.EXITED)
    assert [c.name for c in decide.end_plan(list(made.containers()), ending).terminate] == ["i0"]
