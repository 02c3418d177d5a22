"""``/exec``: the kubelet's streaming route over SPDY/3.1 (remotecommand protocols v1 to v4).

The request is checked (path, command, a running container: errors are plain
HTTP answers, before any upgrade), the protocol negotiated from
``X-Stream-Protocol-Version``, the connection upgraded, and the streams the
client opens (``streamType`` error, stdin, stdout, stderr, resize) bound to the
command the backend started. The v4 error stream ends with a ``Status``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from vkcmd.kubeletapi import spdy, wsstreams
from vkcmd.kubeletapi.backend import ApiError, BadRequest, ExecTarget, Forbidden, NonZeroExit, NotFound
from vkcmd.kubeletapi.transport import Handler

log = logging.getLogger("vkcmd.kubeletapi.streams")

REMOTECOMMAND = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
STREAM_WAIT = 30.0  # the kubelet's stream creation timeout
_TRUE = ("1", "true", "True")
FIRST_SIZE_WAIT = 5.0  # s: how long a terminal exec waits for the client's first size


def negotiate(offered: list[str], supported: tuple[str, ...]) -> str:
    """The first protocol the client offers that is supported (the client lists its preference first)."""
    for value in offered:
        for protocol in (p.strip() for p in value.split(",")):
            if protocol in supported:
                return protocol
    raise Forbidden(f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                    f"server accepts {list(supported)}")


def exit_status(code: int | None, message: str = "") -> dict[str, Any]:
    """The v4 error stream's final Status: Success, or NonZeroExitCode carrying the code."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    if code is None:
        return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"}
    return {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": message or f"command terminated with non-zero exit code: exit status {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def _parse(path: str, query: str, command_needed: bool = True) -> tuple[str, str, str, list[str], dict[str, bool]]:
    from vkcmd.kubeletapi.routes import check_name  # the one name check (routes imports this module lazily too)

    parts = [unquote(p) for p in path.split("/")[2:] if p != ""]
    if len(parts) not in (3, 4):
        raise NotFound("404 page not found")
    namespace, pod, container = parts[0], parts[1], parts[-1]
    check_name("namespace", namespace)
    check_name("pod name", pod, subdomain=True)
    check_name("container name", container)
    params = parse_qs(query, keep_blank_values=True)
    command = params.get("command") or []
    flags = {name: (params.get(name) or ["0"])[-1] in _TRUE for name in ("input", "output", "error", "tty")}
    if not command and command_needed:
        raise BadRequest("you must specify at least 1 command")
    if not (flags["input"] or flags["output"] or flags["error"]):
        raise BadRequest("you must specify at least 1 of stdin, stdout, stderr")
    if flags["tty"]:
        flags["error"] = False  # a terminal has one output stream
    return namespace, pod, container, command, flags


class _Streams:
    """The streams of one exec session, by type, filled in by the session's reader thread."""

    def __init__(self, wanted: set[str]) -> None:
        self.ids: dict[str, int] = {}
        self.wanted = wanted
        self.ready = threading.Event()
        self.stdin: Callable[[bytes, bool], None] | None = None
        self.resize: Callable[[bytes], None] | None = None
        self.early_sizes: list[bytes] = []  # sizes sent before the command started (the first one, usually)
        self.sized = threading.Event()
        self.client_gone: Callable[[], bool] = lambda: False
        self._lock = threading.Lock()
        self._early_stdin: list[tuple[bytes, bool]] = []
        self._types: dict[int, str] = {}

    def opened(self, frame: spdy.Frame) -> bool:
        kind = frame.header("streamtype")
        if kind not in ("error", "stdin", "stdout", "stderr", "resize"):
            return False
        self.ids[kind] = frame.stream_id
        self._types[frame.stream_id] = kind
        if self.wanted <= set(self.ids):
            self.ready.set()
        return True

    def bind_channels(self, ids: dict[str, int]) -> None:
        """Streams that exist from the start (WebSocket channels): all there, by their fixed numbers."""
        self.ids = dict(ids)
        self._types = {number: name for name, number in ids.items()}
        self.ready.set()

    def bind_resize(self, resize: Callable[[bytes], None]) -> None:
        """Apply terminal sizes with ``resize``, first those that arrived before the command started."""
        with self._lock:
            early, self.early_sizes = self.early_sizes, []
            for data in early:
                resize(data)
            self.resize = resize

    def bind_stdin(self, write: Callable[[bytes, bool], None]) -> None:
        """Send the command's stdin to ``write``, first what arrived before it started."""
        with self._lock:
            early, self._early_stdin = self._early_stdin, []
            for data, fin in early:
                write(data, fin)
            self.stdin = write

    def data(self, stream_id: int, data: bytes, fin: bool) -> None:
        kind = self._types.get(stream_id)
        if kind == "stdin":
            with self._lock:
                if self.stdin is None:  # before the command started: kept for it
                    self._early_stdin.append((data, fin))
                    return
            self.stdin(data, fin)
        elif kind == "resize" and data:
            with self._lock:
                if self.resize is None:  # before the command started: applied when it does
                    self.early_sizes.append(data)
                    self.sized.set()
                    return
            self.resize(data)


def exec_route(handler: Handler, path: str, query: str) -> int:
    namespace, pod, container, command, flags = _parse(path, query)
    _check_upgrade(handler)
    target = handler.server.owner.backend.exec_target(namespace, pod, container)
    return _session(handler, flags, lambda session, streams, protocol: _run(session, streams, target, command,
                                                                            flags, protocol))


def attach_route(handler: Handler, path: str, query: str) -> int:
    namespace, pod, container, _command, flags = _parse(path, query, command_needed=False)
    _check_upgrade(handler)
    output = handler.server.owner.backend.attach_output(namespace, pod, container)
    return _session(handler, flags, lambda session, streams, protocol: _attach(session, streams, output, protocol))


def _check_upgrade(handler: Handler) -> None:
    if handler.headers.get("Upgrade", "").lower() not in ("spdy/3.1", "websocket"):
        raise BadRequest("Upgrade request required")


def _wanted(flags: dict[str, bool], resize: bool) -> set[str]:
    wanted = {"error"} | {name for flag, name in (("input", "stdin"), ("output", "stdout"), ("error", "stderr"))
                          if flags[flag]}
    return wanted | ({"resize"} if flags["tty"] and resize else set())


def _session(handler: Handler, flags: dict[str, bool], body: Callable[..., None]) -> int:
    """Negotiate, upgrade, wait for the client's streams, run ``body``, end the session."""
    if wsstreams.is_websocket(handler):
        return wsstreams.session(handler, _Streams(_wanted(flags, resize=True)), body)
    protocol = negotiate(handler.headers.get_all("X-Stream-Protocol-Version") or [], REMOTECOMMAND)
    wanted = _wanted(flags, resize=protocol != "channel.k8s.io")
    connection = handler.upgrade("SPDY/3.1", {"X-Stream-Protocol-Version": protocol})
    streams = _Streams(wanted)
    session = spdy.Session(handler.rfile, connection.sendall, streams.opened, streams.data)
    reader = threading.Thread(target=session.serve, name=f"kubeletapi-spdy-{handler.client_address[1]}",
                              daemon=True)
    reader.start()
    try:
        if not streams.ready.wait(STREAM_WAIT):
            log.info("exec: the client did not open its streams in time")
            return 101
        streams.client_gone = lambda: not reader.is_alive()
        body(session, streams, protocol)
    finally:
        handler.end_upgraded(session.close, connection, reader)
    return 101


def _pump(read: Callable[[], bytes], send: Callable[[bytes], None]) -> None:
    while True:
        try:
            chunk = read()
        except OSError:  # a pty reads EIO once its last writer is gone
            return
        if not chunk:
            return
        send(chunk)


def _run(session: spdy.Session, streams: _Streams, target: ExecTarget, command: list[str],
         flags: dict[str, bool], protocol: str) -> None:
    if "resize" in streams.ids:
        # the client sends the terminal's size at once: start the command in it (a full-screen program
        # reads it at start); bounded for a client that never sends one, generous for a loaded machine
        streams.sized.wait(FIRST_SIZE_WAIT)
    try:
        started = target.start(command, tty=flags["tty"], stdin=flags["input"])
    except NonZeroExit as error:  # as a shell reports it: the message on stderr, then 126 or 127
        output = streams.ids.get("stderr") or streams.ids.get("stdout")
        if output:
            session.send_data(output, f"{error.message}\n".encode() if not flags["tty"]
                              else f"{error.message}\r\n".encode())
        _finish(session, streams, protocol, error.exit_code, "", 0)
        return
    except ApiError as error:
        _finish(session, streams, protocol, None, error.message, error.status)
        return
    pumps = []
    process = started.process
    if flags["tty"]:
        fd = started.tty_fd
        streams.bind_stdin(lambda data, fin: os.write(fd, data) if data else None)
        streams.bind_resize(lambda data: _resize(started, data))
        sources = [(lambda: os.read(fd, 65536), streams.ids.get("stdout"))]
    else:
        if process.stdin is not None:
            def stdin(data: bytes, fin: bool) -> None:
                try:
                    if data:
                        process.stdin.write(data)
                        process.stdin.flush()
                    if fin:
                        process.stdin.close()
                except (OSError, ValueError):
                    pass
            streams.bind_stdin(stdin)
        sources = [(lambda: process.stdout.read1(65536), streams.ids.get("stdout")),
                   (lambda: process.stderr.read1(65536), streams.ids.get("stderr"))]
    for read, stream_id in sources:
        send = (lambda data, s=stream_id: session.send_data(s, data)) if stream_id else (lambda data: None)
        pump = threading.Thread(target=_pump, args=(read, send), name=f"kubeletapi-exec-{process.pid}", daemon=True)
        pump.start()
        pumps.append(pump)
    code = process.wait()
    for pump in pumps:
        pump.join(5)
    if started.tty_fd is not None:
        os.close(started.tty_fd)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass
    _finish(session, streams, protocol, code, "", 0)


def _attach(session: spdy.Session, streams: _Streams, output: Any, protocol: str) -> None:
    """The container's output as it comes, and the client's input into its kept stdin, until the
    container ends or the client leaves; with stdinOnce the stdin is closed when this attach ends."""
    stop = threading.Event()
    stdin = getattr(output, "stdin", None)
    if "stdin" in streams.ids:
        streams.bind_stdin(_attach_input(stdin, lambda: stop.is_set() or streams.client_gone()))
    if stdin is not None and stdin.tty:
        streams.bind_resize(lambda data: _resize(stdin, data))
    pumps = []
    for name in ("stdout", "stderr"):
        stream_id = streams.ids.get(name)
        if stream_id is None:
            continue
        chunks = output.follow(name, stop)
        pump = threading.Thread(target=_pump, args=(lambda c=chunks: next(c, b""),
                                                    lambda data, s=stream_id: session.send_data(s, data)),
                                name=f"kubeletapi-attach-{name}", daemon=True)
        pump.start()
        pumps.append(pump)
    while any(p.is_alive() for p in pumps) and not streams.client_gone():
        pumps[0].join(0.2) if pumps else stop.wait(0.2)
    stop.set()
    for pump in pumps:
        pump.join(5)
    if stdin is not None and stdin.once and "stdin" in streams.ids:
        stdin.close()  # stdinOnce: the first attach's end is the end of the container's input
    _finish(session, streams, protocol, 0, "", 0)


def _attach_input(stdin: Any, gone: Callable[[], bool]) -> Callable[[bytes, bool], None]:
    """Where an attach's input goes: the container's stdin (kept open at the client's end of input,
    unless stdinOnce), or nowhere when the container has none."""
    def write(data: bytes, fin: bool) -> None:
        if stdin is None:
            return
        if data:
            stdin.write(data, gone)
        if fin and stdin.once and not stdin.tty:
            stdin.close()
    return write


def _resize(started: Any, data: bytes) -> None:
    for line in data.splitlines():
        try:
            size = json.loads(line)
            started.resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
        except (ValueError, TypeError, AttributeError, OSError):
            continue


def _finish(session: spdy.Session, streams: _Streams, protocol: str, code: int | None, message: str,
            status: int) -> None:
    """The error stream's last word (a Status in v4, text before), then every stream's FIN."""
    if protocol == "v4.channel.k8s.io":
        document = exit_status(code, message)
        if code is None and status:
            document["code"] = status
        body = json.dumps(document).encode()
    else:
        body = b"" if code == 0 else (message or f"command terminated with non-zero exit code: {code}").encode()
    session.send_data(streams.ids["error"], body, fin=True)
    for kind, stream_id in streams.ids.items():
        if kind != "error":
            session.send_data(stream_id, b"", fin=True)
