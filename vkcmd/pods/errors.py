"""The errors of staging: one type the pod controller turns into a waiting container.

Messages name the object or path at fault, in the kubelet's words where the
kubelet has words for it; they never carry the contents of a Secret.
"""

from __future__ import annotations

CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"

# ConfigError.cause values: what kind of fault, for the caller's decisions and for tests.
NOT_FOUND = "NotFound"                  # a ConfigMap or Secret that is not optional is missing
KEY_NOT_FOUND = "KeyNotFound"           # ... or a key in it
INVALID_DATA = "InvalidData"            # an object's data cannot be used (bad base64)
TOKEN_FAILED = "TokenRequestFailed"     # the service account token could not be fetched
HOST_PATH_TYPE = "HostPathType"         # a hostPath is not of the declared type (yet)
UNSUPPORTED_VOLUME = "UnsupportedVolume"
BAD_PATH = "BadPath"                    # a path escapes its directory, collides, or is refused
SCRIPT = "ScriptSelection"              # image names a script volume, but which file is unclear
INVALID_SPEC = "InvalidSpec"            # anything else the spec asks that cannot be done
NOT_YET = "NotYet"                      # the resolver is still fetching it: not a fault, the pod just waits

RETRYABLE_CAUSES = frozenset({NOT_FOUND, KEY_NOT_FOUND, INVALID_DATA, TOKEN_FAILED, HOST_PATH_TYPE, NOT_YET})
CONTAINER_CREATING = "ContainerCreating"


class ConfigError(Exception):
    """The container cannot be staged as its spec says; it waits with ``reason`` and ``message``.

    ``reason`` is the container's waiting reason: ``CreateContainerConfigError``
    for every fault (SPEC §3). ``cause`` says which kind of fault (the
    constants above). ``retryable`` is true when the fault can go away without
    a new pod spec (an object or key appears, a token can be fetched); the
    controller retries those when objects change, the others only with back-off.
    """

    def __init__(self, reason: str, message: str, *, cause: str = INVALID_SPEC,
                 retryable: bool | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.cause = cause
        self.retryable = cause in RETRYABLE_CAUSES if retryable is None else retryable

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ConfigError({self.reason!r}, {self.message!r}, cause={self.cause!r})"


def config_error(message: str, cause: str = INVALID_SPEC) -> ConfigError:
    """A :class:`ConfigError` with the ``CreateContainerConfigError`` reason."""
    return ConfigError(CREATE_CONTAINER_CONFIG_ERROR, message, cause=cause)


def not_yet(message: str) -> ConfigError:
    """The resolver has asked for it in the background: the container waits ``ContainerCreating``
    (no Failed event) and is staged again when the resolver reports the object changed."""
    return ConfigError(CONTAINER_CREATING, message, cause=NOT_YET)


class WorkspaceError(ValueError):
    """The workspace refuses a name or a path: invalid, escaping its directory, or not its own."""
