"""The product's state machines, declared as tables over ``fsm``.

Leaf module of states and named sets of states that every layer may import
(the node side, the pod side, the runtime and the docs). It knows the names of
the product's states and events, nothing of Kubernetes objects or processes.
"""

from __future__ import annotations

import enum

from fsm import Definition, Transition


class NodeState(enum.Enum):
    REGISTERING = "Registering"
    READY = "Ready"
    DRAINING = "Draining"
    EXPIRED = "Expired"


class NodeEvent:
    REGISTERED = "registered"
    DRAIN = "drain"
    DRAINED = "drained"


NODE = Definition(
    "node", NodeState, NodeState.REGISTERING,
    [
        Transition(NodeEvent.REGISTERED, NodeState.REGISTERING, NodeState.READY,
                   doc="the Node object and its first Lease are written"),
        Transition(NodeEvent.DRAIN, (NodeState.REGISTERING, NodeState.READY), NodeState.DRAINING,
                   doc="walltime margin reached, SIGTERM/SIGINT, or an operator request"),
        Transition(NodeEvent.DRAINED, NodeState.DRAINING, NodeState.EXPIRED,
                   doc="every pod's processes are gone and final statuses written"),
    ],
    final=[NodeState.EXPIRED],
)


class ContainerState(enum.Enum):
    PENDING = "Pending"
    STAGING = "Staging"
    RUNNING = "Running"
    EXITED = "Exited"


class ContainerEvent:
    STAGE = "stage"
    CONFIG_ERROR = "config_error"
    STARTED = "started"
    START_FAILED = "start_failed"
    EXITED = "exited"
    RESTART = "restart"
    ABANDON = "abandon"
    ADOPT = "adopt"
    RECOVER_EXIT = "recover_exit"


_C = ContainerState
CONTAINER = Definition(
    "container", ContainerState, ContainerState.PENDING,
    [
        Transition(ContainerEvent.STAGE, _C.PENDING, _C.STAGING,
                   doc="its turn came: volumes, env and argv are being materialised"),
        Transition(ContainerEvent.CONFIG_ERROR, _C.STAGING, _C.PENDING,
                   doc="a referenced object is missing or a path is bad; waits and is retried"),
        Transition(ContainerEvent.STARTED, _C.STAGING, _C.RUNNING,
                   doc="its process group was spawned"),
        Transition(ContainerEvent.START_FAILED, _C.STAGING, _C.EXITED,
                   doc="the command could not be executed"),
        Transition(ContainerEvent.EXITED, _C.RUNNING, _C.EXITED,
                   doc="the group leader ended (exit code recorded)"),
        Transition(ContainerEvent.RESTART, _C.EXITED, _C.STAGING,
                   doc="restartPolicy and back-off allow another run"),
        Transition(ContainerEvent.ABANDON, (_C.PENDING, _C.STAGING), _C.EXITED,
                   doc="the pod ends before this container ran"),
        Transition(ContainerEvent.ADOPT, _C.PENDING, _C.RUNNING,
                   doc="found running after a restart of vkcmd"),
        Transition(ContainerEvent.RECOVER_EXIT, _C.PENDING, _C.EXITED,
                   doc="found ended after a restart of vkcmd; its recorded exit is reported"),
    ],
)

class PodState(enum.Enum):
    ACTIVE = "Active"
    ENDING = "Ending"
    ENDED = "Ended"
    CLEANED = "Cleaned"
    REMOVED = "Removed"


class PodEvent:
    END = "end"
    COMPLETE = "complete"
    STOPPED = "stopped"
    CLEAN = "clean"
    VANISH = "vanish"


_P = PodState
POD = Definition(
    "pod", PodState, PodState.ACTIVE,
    [
        Transition(PodEvent.END, _P.ACTIVE, _P.ENDING,
                   doc="deleted, gone from the API, past activeDeadlineSeconds, or the node drains"),
        Transition(PodEvent.END, _P.ENDED, _P.ENDING,
                   doc="an ended pod is deleted: its workspace and API object go"),
        Transition(PodEvent.COMPLETE, _P.ACTIVE, _P.ENDED,
                   doc="every container is done by restartPolicy, or an init container failed for good"),
        Transition(PodEvent.STOPPED, _P.ENDING, _P.ENDED,
                   doc="a deadline or drain ending: the last process is gone, the final phase is written"),
        Transition(PodEvent.CLEAN, _P.ENDING, _P.CLEANED,
                   doc="a deletion: the last process is gone, runs and workspace removed, API object deleted"),
        Transition(PodEvent.VANISH, _P.ENDING, _P.REMOVED,
                   doc="gone from the API: the last process is gone, runs and workspace removed, nothing written"),
    ],
    final=[PodState.CLEANED, PodState.REMOVED],
)

#: Container states in which the container has (or may have) live processes.
CONTAINER_LIVE = frozenset({ContainerState.RUNNING})
#: Container states before the first process of a run exists.
CONTAINER_WAITING = frozenset({ContainerState.PENDING, ContainerState.STAGING})
#: Pod states in which containers are started and restarted.
POD_RUNNING = frozenset({PodState.ACTIVE})
#: Pod states in which nothing more will run (a terminal phase, or ended by a deadline or drain).
POD_DONE = frozenset({PodState.ENDED, PodState.CLEANED, PodState.REMOVED})
#: Pod states after which the provider forgets the pod.
POD_GONE = frozenset({PodState.CLEANED, PodState.REMOVED})
#: Node states in which new pods are accepted.
NODE_ACCEPTING = frozenset({NodeState.READY})

ALL = (NODE, CONTAINER, POD)
