"""The boundary between the kubelet API and the rest of vkcmd.

The HTTP side asks the node three things — which pods it runs, how much CPU and
memory they use, and what their containers wrote — through :class:`Backend`,
which ``vkcmd.app`` implements over the pod cache and the runtime. This module
holds that protocol, the plain data it exchanges, and the typed errors a
backend raises; it knows nothing of HTTP, processes or the API client.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


# --- errors: raised by the backend and by request parsing; mapped to HTTP status once (server.STATUS) ---

class ApiError(Exception):
    """An error the kubelet API answers with a status code and ``message`` as the body."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    """The request cannot be served as asked (bad parameter, no previous run, ...): 400."""

    status = 400


class Unauthorized(ApiError):
    """No credentials, or credentials that do not authenticate: 401."""

    status = 401


class Forbidden(ApiError):
    """Authenticated, but SubjectAccessReview does not allow the request: 403."""

    status = 403


class NotFound(ApiError):
    """No such pod or container on this node, or no such path: 404."""

    status = 404


class MethodNotAllowed(ApiError):
    """The path exists but does not take this HTTP method: 405."""

    status = 405


class Invalid(ApiError):
    """Parameters that decode but fail validation (the kubelet's PodLogOptions check): 422."""

    status = 422


class Unavailable(ApiError):
    """The node cannot answer now (e.g. a review call failed): 500 for authorization, like the kubelet."""

    status = 500


# --- container logs -----------------------------------------------------------------

@dataclass(frozen=True)
class LogOptions:
    """What a ``/containerLogs`` request asks for (field names match ``vkcmd.containerlogs.LogOptions``).

    ``since_time_ns`` is absolute (``sinceSeconds`` is turned into it when the
    request is parsed); ``None`` fields mean "not limited".
    """

    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    since_time_ns: int | None = None
    limit_bytes: int | None = None
    previous: bool = False


# --- usage ----------------------------------------------------------------------------

@dataclass(slots=True)
class ContainerUsage:
    """One running container, measured once (all processes of its current run summed). This and
    ``PodUsage`` are made per pod and request (thousands): slotted, not frozen; never change one."""

    name: str
    run_id: str  # identifies this run; a restart is a new run (rates never span two runs)
    start_time: float  # unix seconds the run started
    cpu_seconds: float  # cumulative CPU time of the run, user + system; the backend keeps it > 0
    memory_working_set_bytes: int  # what metrics-server reports; > 0 for a live process
    memory_rss_bytes: int
    memory_usage_bytes: int  # rss plus what else the kernel charges (here: >= working set)
    process_count: int = 1
    memory_limit_bytes: int | None = None
    timestamp: float | None = None  # unix seconds it was measured; None: the snapshot's measured_at


@dataclass(slots=True)
class PodUsage:
    """A pod this node runs, with the containers that have a live run."""

    namespace: str
    name: str
    uid: str
    start_time: float  # unix seconds (the pod's status.startTime)
    containers: Sequence[ContainerUsage] = ()


@dataclass(frozen=True)
class NodeUsage:
    """The whole machine."""

    start_time: float  # unix seconds (boot time)
    cpu_seconds: float  # cumulative busy CPU time of all cores since boot
    memory_working_set_bytes: int
    memory_rss_bytes: int
    memory_usage_bytes: int
    memory_available_bytes: int | None = None


@dataclass(frozen=True)
class UsageSnapshot:
    """The node and every pod, taken at ``taken_at``; containers at ``measured_at`` (the background
    scan they come from, a little earlier) unless one carries its own ``timestamp``. The backend may
    hand out the same ``pods`` (and ``PodUsage`` objects) again while nothing in them changed."""

    taken_at: float  # unix seconds
    node: NodeUsage
    pods: Sequence[PodUsage] = field(default_factory=tuple)
    measured_at: float | None = None  # unix seconds of the scan its containers come from; None: taken_at


# --- exec ------------------------------------------------------------------------------

class ExecTarget(Protocol):
    """A running container a command can be started in (``Backend.exec_target``)."""

    def start(self, command: Sequence[str], *, tty: bool, stdin: bool) -> Any:
        """Start ``command`` as the container runs (its env, working directory, marker). The result has
        ``process`` (a ``subprocess.Popen``), ``tty_fd`` (the pty's controller, or None) and
        ``resize(width, height)``. Raises :class:`NonZeroExit` when the command cannot start."""
        ...


class NonZeroExit(ApiError):
    """The command could not be started; answered as the exit code a shell gives (126, 127)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- the protocol -----------------------------------------------------------------------

class Backend(Protocol):
    """What the kubelet API needs from the node. Every method is called from request threads
    concurrently and must be thread-safe; none may block for long except a followed log."""

    def list_pods(self) -> Sequence[Mapping[str, Any]]:
        """The pods bound to this node, as API-shaped dicts (copies: the caller may serialise them)."""
        ...

    def usage(self) -> UsageSnapshot:
        """The node and its pods, measured now or by a recent background scan (each container's
        ``timestamp`` says when); the server caches the result about a second."""
        ...

    def open_container_log(self, namespace: str, pod: str, container: str, options: LogOptions,
                           stop: threading.Event) -> Iterator[bytes]:
        """The container's output (stdout and stderr interleaved in time order) as byte chunks.

        Raises :class:`NotFound` (unknown pod or container) or :class:`BadRequest`
        (e.g. ``previous`` with no earlier run) *when called*, before any byte is
        sent — not lazily from the iterator. With ``options.follow`` the iterator
        keeps yielding until the run ends or ``stop`` is set (the client left or
        the server stops); it must check ``stop`` at least every second.
        """
        ...

    def attach_output(self, namespace: str, pod: str, container: str) -> Any:
        """A running container's output from now on: ``follow(name, stop)`` yields new bytes of
        ``stdout`` or ``stderr`` until the run ends or ``stop`` is set; :class:`NotFound` if not running.
        Its ``stdin`` is the container's kept stdin (``write(data, gone)``, ``close()``, ``once``, ``tty``,
        ``fd``) or None: without ``stdin: true`` an attach's input is dropped, as containerd drops it."""
        ...

    def pod_address(self, namespace: str, pod: str) -> str:
        """The address the pod's ports are reached at on this node; :class:`NotFound` for no such pod."""
        ...

    def exec_target(self, namespace: str, pod: str, container: str) -> ExecTarget:
        """The running container to exec in; :class:`NotFound` when it is not running on this node."""
        ...
