"""The product's two machines: the paths the node and a container take."""

import pytest

from fsm import IllegalTransition, to_mermaid
from vkcmd.machines import CONTAINER, NODE, ContainerEvent as CE, ContainerState as CS, NodeEvent, NodeState


def test_node_life():
    node = NODE.new("vk")
    node.fire(NodeEvent.REGISTERED)
    node.fire(NodeEvent.DRAIN, reason="WalltimeExpired")
    node.fire(NodeEvent.DRAINED)
    assert node.state is NodeState.EXPIRED and node.is_final
    with pytest.raises(IllegalTransition):
        node.fire(NodeEvent.DRAIN)


def test_node_can_drain_while_registering_but_not_skip_draining():
    node = NODE.new("vk")
    with pytest.raises(IllegalTransition):
        node.fire(NodeEvent.DRAINED)
    assert node.fire(NodeEvent.DRAIN, reason="Shutdown") is NodeState.DRAINING


def test_container_life_with_a_restart_and_a_config_error():
    container = CONTAINER.new("default/p1/c1")
    path = [CE.STAGE, CE.CONFIG_ERROR, CE.STAGE, CE.STARTED, CE.EXITED, CE.RESTART, CE.STARTED, CE.EXITED]
    states = [container.fire(event) for event in path]
    assert states == [CS.STAGING, CS.PENDING, CS.STAGING, CS.RUNNING, CS.EXITED, CS.STAGING, CS.RUNNING, CS.EXITED]


@pytest.mark.parametrize("events, final", [
    ([CE.STAGE, CE.START_FAILED], CS.EXITED),
    ([CE.ABANDON], CS.EXITED),
    ([CE.ADOPT, CE.EXITED], CS.EXITED),
    ([CE.RECOVER_EXIT], CS.EXITED),
])
def test_container_other_paths(events, final):
    container = CONTAINER.new("c")
    for event in events:
        container.fire(event)
    assert container.state is final


def test_a_running_container_cannot_be_restaged_without_exiting():
    container = CONTAINER.new("c")
    container.fire(CE.STAGE)
    container.fire(CE.STARTED)
    with pytest.raises(IllegalTransition):
        container.fire(CE.RESTART)
    with pytest.raises(IllegalTransition):
        container.fire(CE.STAGE)


def test_diagrams_render():
    assert "Registering --> Ready: registered" in to_mermaid(NODE)
    assert "Exited --> Staging: restart" in to_mermaid(CONTAINER)


from vkcmd.machines import POD, POD_DONE, POD_GONE, POD_RUNNING, PodEvent as PE, PodState as PS  # noqa: E402


@pytest.mark.parametrize("events, final", [
    ([PE.COMPLETE], PS.ENDED),  # every container done by restartPolicy
    ([PE.END, PE.STOPPED], PS.ENDED),  # a deadline or a drain
    ([PE.END, PE.CLEAN], PS.CLEANED),  # deleted while running
    ([PE.COMPLETE, PE.END, PE.CLEAN], PS.CLEANED),  # deleted after it succeeded
    ([PE.END, PE.STOPPED, PE.END, PE.VANISH], PS.REMOVED),  # drained, then gone from the API
])
def test_pod_paths(events, final):
    pod = POD.new("ns/p")
    assert pod.state in POD_RUNNING
    for event in events:
        pod.fire(event)
    assert pod.state is final and pod.state in POD_DONE
    assert pod.is_final is (final in POD_GONE)


@pytest.mark.parametrize("events, illegal", [
    ([], PE.STOPPED),  # only an ending stops
    ([], PE.CLEAN),  # nothing is cleaned while it may still run
    ([PE.COMPLETE], PE.COMPLETE),
    ([PE.END], PE.COMPLETE),  # an ending pod does not complete on its own
    ([PE.END, PE.CLEAN], PE.END),  # nothing leaves Cleaned
])
def test_pod_illegal_moves(events, illegal):
    pod = POD.new("ns/p")
    for event in events:
        pod.fire(event)
    with pytest.raises(IllegalTransition):
        pod.fire(illegal)
