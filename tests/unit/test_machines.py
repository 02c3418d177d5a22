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
