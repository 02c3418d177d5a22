"""SPDY/3.1 framing, as the Kubernetes streaming protocols use it (exec, attach, port-forward).

Frames in and out (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY,
HEADERS, WINDOW_UPDATE, DATA), header blocks compressed with zlib and the
SPDY/3 dictionary (one context per direction for the whole connection), and a
:class:`Session` that reads frames on the caller's thread and writes under a
lock. Flow control is not enforced: the Go peer never sends WINDOW_UPDATE, so
nothing ever waits for one. Knows nothing of exec or HTTP.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_REFUSED_STREAM, RST_CANCEL = 1, 3, 5
MAX_FRAME = 1 << 24  # the 24-bit length field's bound
#: Data goes in frames of up to 1 MiB: the Go peer queues at most 50 frames per frame worker, and when a
#: stream's reader is gone (client-go <= 1.32 after its local client left) what is in flight for it must
#: stay under that, or the whole connection blocks; big frames keep the frame count in flight small.
DATA_CHUNK = 1 << 20

_WORDS = ("options head post put delete trace accept accept-charset accept-encoding accept-language "
          "accept-ranges age allow authorization cache-control connection content-base content-encoding "
          "content-language content-length content-location content-md5 content-range content-type date etag "
          "expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since "
          "last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer "
          "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate "
          "method get status|200 OK|version|HTTP/1.1|url|public|set-cookie|keep-alive|origin")
_TAIL = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
         "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
         "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
         "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
         "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
         "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")


def _dictionary() -> bytes:
    """The SPDY/3 header dictionary (draft 3, 2.6.10.1): length-prefixed words, then a tail of text."""
    head, _, rest = _WORDS.partition("|")
    words = head.split() + rest.split("|")
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + _TAIL.encode()


DICTIONARY = _dictionary()
assert len(DICTIONARY) == 1423 and zlib.adler32(DICTIONARY) == 0xE3C6A7C2  # the dictionary id of SPDY/3


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3.1 as the connection needs it."""


@dataclass
class Frame:
    """One frame. Control frames have ``kind`` (a type above); data frames have ``kind == 0``."""

    kind: int
    stream_id: int = 0
    flags: int = 0
    headers: dict[str, list[str]] = field(default_factory=dict)
    data: bytes = b""
    status: int = 0  # RST_STREAM and GOAWAY
    ping_id: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower()) or [""]
        return values[0]


class HeaderCodec:
    """zlib with the SPDY/3 dictionary, one stream per direction (each block ends with a sync flush)."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                         DICTIONARY)
        self._inflate = zlib.decompressobj(15, DICTIONARY)

    def encode(self, headers: Mapping[str, list[str] | str]) -> bytes:
        block = [struct.pack(">I", len(headers))]
        for name, values in headers.items():
            value = values if isinstance(values, str) else "\0".join(values)
            for part in (name.lower().encode(), value.encode()):
                block.append(struct.pack(">I", len(part)) + part)
        data = b"".join(block)
        return self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, compressed: bytes) -> dict[str, list[str]]:
        try:
            data = self._inflate.decompress(compressed, 1 << 20)
        except zlib.error as error:
            raise ProtocolError(f"bad header block: {error}") from None
        if self._inflate.unconsumed_tail:
            raise ProtocolError("header block over 1 MiB")
        try:
            (count,), offset = struct.unpack_from(">I", data), 4
            headers: dict[str, list[str]] = {}
            for _ in range(count):
                parts = []
                for _ in range(2):
                    (length,) = struct.unpack_from(">I", data, offset)
                    parts.append(data[offset + 4:offset + 4 + length].decode())
                    offset += 4 + length
                headers.setdefault(parts[0].lower(), []).extend(parts[1].split("\0"))
        except (struct.error, UnicodeDecodeError) as error:
            raise ProtocolError(f"bad header block: {error}") from None
        return headers


def _read_exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if data is None or len(data) < size:
        raise EOFError("the peer closed the connection")
    return data


def read_frame(reader: BinaryIO, codec: HeaderCodec) -> Frame:
    """The next frame from ``reader`` (EOFError at the end)."""
    head = _read_exactly(reader, 8)
    first, second = struct.unpack(">II", head)
    flags, length = second >> 24, second & 0xFFFFFF
    body = _read_exactly(reader, length) if length else b""
    if not first & 0x80000000:
        return Frame(0, stream_id=first & 0x7FFFFFFF, flags=flags, data=body)
    version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
    if version != VERSION:
        raise ProtocolError(f"SPDY version {version}, expected {VERSION}")
    try:
        if kind == SYN_STREAM:
            stream_id = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
            return Frame(kind, stream_id, flags, headers=codec.decode(body[10:]))
        if kind in (SYN_REPLY, HEADERS):
            stream_id = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
            return Frame(kind, stream_id, flags, headers=codec.decode(body[4:]))
        if kind in (RST_STREAM, GOAWAY):
            stream_id, status = struct.unpack_from(">II", body)
            return Frame(kind, stream_id & 0x7FFFFFFF, flags, status=status)
        if kind == PING:
            return Frame(kind, flags=flags, ping_id=struct.unpack_from(">I", body)[0])
    except struct.error:
        raise ProtocolError(f"short control frame of type {kind}") from None
    return Frame(kind, flags=flags, data=body)  # SETTINGS, WINDOW_UPDATE and unknown types: ignored by callers


def _control(kind: int, flags: int, body: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body


def encode_data(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def encode_syn_stream(codec: HeaderCodec, stream_id: int, headers: Mapping[str, list[str] | str],
                      fin: bool = False) -> bytes:
    body = struct.pack(">IIH", stream_id, 0, 0) + codec.encode(headers)
    return _control(SYN_STREAM, FLAG_FIN if fin else 0, body)


def encode_syn_reply(codec: HeaderCodec, stream_id: int, headers: Mapping[str, list[str] | str] | None = None,
                     fin: bool = False) -> bytes:
    return _control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + codec.encode(headers or {}))


def encode_rst(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def encode_ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack(">I", ping_id))


def encode_goaway(last_stream_id: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))


class Session:
    """One SPDY connection on the server side: streams the peer opens, data it sends, writes under a lock.

    :meth:`serve` reads frames until the peer leaves, answering PINGs, replying
    to each SYN_STREAM (``on_stream(frame)`` decides: True accepts it, False
    refuses it with RST_STREAM) and passing data to ``on_data(stream_id, data,
    fin)``; a RST_STREAM reaches ``on_reset(stream_id)`` when given, else ``on_data`` as a FIN.
    """

    def __init__(self, reader: BinaryIO, write: Callable[[bytes], None],
                 on_stream: Callable[[Frame], bool], on_data: Callable[[int, bytes, bool], None],
                 on_reset: Callable[[int], None] | None = None) -> None:
        self._on_reset = on_reset
        self._reader = reader
        self._write = write
        self._lock = threading.Lock()
        self._codec = HeaderCodec()
        self._on_stream = on_stream
        self._on_data = on_data
        self._last_stream = 0
        self.closed = False

    def send(self, frame: bytes) -> None:
        with self._lock:
            if not self.closed:
                self._write(frame)

    def send_data(self, stream_id: int, data: bytes, fin: bool = False) -> None:
        for start in range(0, max(len(data), 1), DATA_CHUNK):
            chunk = data[start:start + DATA_CHUNK]
            self.send(encode_data(stream_id, chunk, fin and start + DATA_CHUNK >= len(data)))

    def serve(self) -> None:
        try:
            while True:
                frame = read_frame(self._reader, self._codec)
                if frame.kind == 0:
                    self._on_data(frame.stream_id, frame.data, frame.fin)
                elif frame.kind == SYN_STREAM:
                    self._last_stream = max(self._last_stream, frame.stream_id)
                    with self._lock:  # the reply's header block must go out in encoding order
                        accepted = self._on_stream(frame)
                        if not self.closed:
                            self._write(encode_syn_reply(self._codec, frame.stream_id) if accepted
                                        else encode_rst(frame.stream_id, RST_REFUSED_STREAM))
                    if accepted and frame.fin:
                        self._on_data(frame.stream_id, b"", True)
                elif frame.kind == RST_STREAM:
                    if self._on_reset is not None:
                        self._on_reset(frame.stream_id)
                    else:
                        self._on_data(frame.stream_id, b"", True)
                elif frame.kind == PING:
                    self.send(encode_ping(frame.ping_id))
                elif frame.kind == GOAWAY:
                    return
        except (EOFError, OSError, ValueError):
            return

    def close(self) -> None:
        self.send(encode_goaway(self._last_stream))
        with self._lock:
            self.closed = True
