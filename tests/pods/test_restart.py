"""restartPolicy and back-off arithmetic."""

import pytest

from vkcmd.pods.restart import crashes_after_run, restart_delay, should_restart


@pytest.mark.parametrize("policy, code, restart", [
    ("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False), ("OnFailure", 3, True),
    ("Never", 0, False), ("Never", 1, False),
])
def test_should_restart(policy, code, restart):
    assert should_restart(policy, code) is restart


def test_back_off_doubles_from_initial_to_maximum():
    delays = [restart_delay(n, 10, 300) for n in range(1, 9)]
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]


def test_a_long_run_resets_the_crash_count():
    assert crashes_after_run(5, 30) == 6
    assert crashes_after_run(5, 601) == 1
