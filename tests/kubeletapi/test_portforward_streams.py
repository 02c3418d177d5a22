"""/portForward when the client gives up one connection mid-download, as client-go >= 1.33 does (RST_STREAM
on the data stream; and a FIN): the node stops that stream, closes its error stream, and the others go on.

The client is the project's own SPDY framing over TLS with a client certificate; the pod side is a TCP
server thread serving 20 MiB per connection. (kubectl <= 1.32 never resets the stream: tests/e2e.)
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import pytest

from vkcmd.kubeletapi import spdy

from .conftest import SLEEP, client_context

BODY = os.urandom(20 << 20)
DIGEST = hashlib.sha256(BODY).hexdigest()
PING_ID = 7


class PodServer:
    """A pod's TCP port: each connection names itself in a line, gets BODY, and its outcome is kept."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.outcomes: dict[str, str] = {}  # request line -> "sent" | "closed" (by the node) | "stalled"
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, name="test-pod-accept")
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), name="test-pod-conn")
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        name = b""
        try:
            while not name.endswith(b"\n"):
                chunk = conn.recv(16)
                if not chunk:
                    return
                name += chunk
            try:
                conn.sendall(BODY)
                outcome = "sent"
            except TimeoutError:
                outcome = "stalled"  # the node neither read nor closed it
            except OSError:
                outcome = "closed"
            self.outcomes[name.decode().strip()] = outcome
        finally:
            conn.close()

    def stop(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept(); a close() alone does not
        except OSError:
            pass
        self.listener.close()
        self._accepting.join(5)
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(35)


class Client:
    """A port-forward SPDY client: streams opened as client-go does, every frame received kept in order;
    it can stop reading (its socket buffers fill, the node's writes block) once a stream got some bytes."""

    def __init__(self, port: int, context, path: str) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                          "X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n".encode())
        self.reader = self.sock.makefile("rb")
        status = self.reader.readline()
        assert status.split()[1] == b"101", status
        while self.reader.readline() not in (b"\r\n", b""):
            pass
        self.frames: list[spdy.Frame] = []
        self.received: dict[int, int] = {}
        self.error: BaseException | None = None
        self.changed = threading.Condition()
        self.reading, self.paused = threading.Event(), threading.Event()
        self.reading.set()
        self._pause_at: tuple[int, int] | None = None
        self._out, self._in = spdy.HeaderCodec(), spdy.HeaderCodec()
        self._next_id = 1
        self._write = threading.Lock()
        self._thread = threading.Thread(target=self._read, name="test-spdy-client")
        self._thread.start()

    def _read(self) -> None:
        try:
            while self.reading.wait(60):
                frame = spdy.read_frame(self.reader, self._in)
                with self.changed:
                    self.frames.append(frame)
                    if frame.kind == 0:
                        self.received[frame.stream_id] = self.received.get(frame.stream_id, 0) + len(frame.data)
                        if self._pause_at and self.received[frame.stream_id] >= self._pause_at[1] and \
                                frame.stream_id == self._pause_at[0]:
                            self._pause_at = None
                            self.reading.clear()
                            self.paused.set()
                    self.changed.notify_all()
        except (EOFError, OSError, spdy.ProtocolError) as error:
            self.error = error
            with self.changed:
                self.changed.notify_all()

    def send(self, frame: bytes) -> None:
        with self._write:
            self.sock.sendall(frame)

    def open(self, request_id: int, port: int) -> tuple[int, int]:
        """The error then the data stream of one connection; the error stream closed at once (client-go)."""
        ids = []
        for kind in ("error", "data"):
            stream_id, self._next_id = self._next_id, self._next_id + 2
            with self._write:
                self.sock.sendall(spdy.encode_syn_stream(self._out, stream_id, {
                    "streamtype": kind, "port": str(port), "requestid": str(request_id)}))
            ids.append(stream_id)
        self.send(spdy.encode_data(ids[0], b"", fin=True))
        for stream_id in ids:
            self.wait(lambda f, s=stream_id: f.kind == spdy.SYN_REPLY and f.stream_id == s, 15)
        return ids[0], ids[1]

    def pause_when(self, stream_id: int, size: int) -> None:
        with self.changed:
            self._pause_at = (stream_id, size)

    def wait(self, match, timeout: float) -> int:
        """The index of the first frame that ``match``es, waiting up to ``timeout`` s for it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for index, frame in enumerate(self.frames):
                    if match(frame):
                        return index
                left = deadline - time.monotonic()
                assert left > 0 and self.error is None, f"no such frame in {timeout}s (reader: {self.error!r})"
                self.changed.wait(left)

    def body(self, stream_id: int) -> bytes:
        with self.changed:
            return b"".join(f.data for f in self.frames if f.kind == 0 and f.stream_id == stream_id)

    def close(self) -> None:
        self.reading.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(10)
        self.sock.close()


def fin_of(stream_id: int):
    return lambda f: f.kind == 0 and f.stream_id == stream_id and f.fin


@pytest.fixture(scope="module")
def web(backend):
    backend.add_pod("pf", "web", {"c": SLEEP})
    return backend


@pytest.fixture
def pod_port():
    server = PodServer()
    yield server
    server.stop()


@pytest.mark.parametrize("leave", ["rst", "fin"])
def test_a_client_giving_up_a_download_stops_that_stream_only(web, serve, pki, admin_cert, pod_port, leave):
    server = serve(web)
    client = Client(server.port, client_context(pki, admin_cert), "/portForward/pf/web")
    try:
        e0, d0 = client.open(0, pod_port.port)
        e1, d1 = client.open(1, pod_port.port)
        client.pause_when(d0, 1 << 20)
        client.send(spdy.encode_data(d0, b"0\n"))
        client.send(spdy.encode_data(d1, b"1\n"))
        assert client.paused.wait(30), "request 0's first MiB"
        # the client leaves while it reads nothing: the node is blocked writing, the pod's bytes queue up
        client.send(spdy.encode_rst(d0, spdy.RST_CANCEL) if leave == "rst" else spdy.encode_data(d0, b"", fin=True))
        client.send(spdy.encode_ping(PING_ID))  # answered by the node's reader after it handled the line above
        time.sleep(0.5)
        client.reading.set()
        pong = client.wait(lambda f: f.kind == spdy.PING and f.ping_id == PING_ID, 30)
        closed = client.wait(fin_of(e0), 15)  # (b) the node closes request 0's error stream
        assert client.body(e0) == b""  # with no error in it

        client.wait(fin_of(d1), 60)  # (c) the other download is whole
        assert (hashlib.sha256(client.body(d1)).hexdigest(), len(client.body(d1))) == (DIGEST, len(BODY))
        e2, d2 = client.open(2, pod_port.port)  # (d) a connection opened afterwards on the session works
        client.send(spdy.encode_data(d2, b"2\n"))
        client.wait(fin_of(d2), 60)
        assert hashlib.sha256(client.body(d2)).hexdigest() == DIGEST
        client.wait(fin_of(e2), 15)

        wait = time.monotonic() + 15  # (e) the pod saw request 0's connection closed by the node
        while "0" not in pod_port.outcomes and time.monotonic() < wait:
            time.sleep(0.05)
        assert pod_port.outcomes == {"0": "closed", "1": "sent", "2": "sent"}

        with client.changed:  # (a) frames for request 0's data stream once the node knew the client left
            frames = [(i, f) for i, f in enumerate(client.frames) if f.stream_id == d0 and f.kind == 0]
        payload = [i for i, f in frames if f.data and i > pong]
        assert len(payload) <= 1, f"{len(payload)} DATA frames after the node handled the {leave}"  # one in flight
        assert all(i < closed for i in payload), "DATA for request 0 after its error stream was closed"
        assert client.received[d0] < len(BODY)
        fins = [i for i, f in frames if f.fin]  # (the FINs may come before the PING's answer)
        if leave == "rst":  # a reset stream gets no frame more (SPDY/3 2.4.2), its FIN neither
            assert fins == [], "a FIN on the stream the client reset"
        else:  # the client only half-closed: the node closes its half, after the error stream
            assert len(fins) == 1 and fins[0] > closed
            assert frames[-1][0] == fins[0]
    finally:
        client.close()
