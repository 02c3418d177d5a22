"""Pod spec → what to run: the workspace, volumes, environment and argv of each container.

Owns the shape of Pod objects (plain JSON dicts, camelCase keys, as the API
server returns them) and the files staging puts under
``<root>/<namespace>/<pod>/``. Must not know the API client, processes or HTTP:
it imports neither ``kubernetes`` nor ``psutil`` nor ``subprocess``, nor
``vkcmd.kube``, ``vkcmd.runtime`` or ``vkcmd.kubeletapi``. What it needs from the
cluster comes through a :class:`Resolver`.
"""

from vkcmd.pods.envvars import StagingEvent
from vkcmd.pods.errors import CREATE_CONTAINER_CONFIG_ERROR, ConfigError, WorkspaceError
from vkcmd.pods.paths import Workspace
from vkcmd.pods.resolver import Resolver, StaticResolver
from vkcmd.pods.staging import StagedContainer, stage_container

__all__ = [
    "CREATE_CONTAINER_CONFIG_ERROR",
    "ConfigError",
    "Resolver",
    "StagedContainer",
    "StagingEvent",
    "StaticResolver",
    "Workspace",
    "WorkspaceError",
    "stage_container",
]
