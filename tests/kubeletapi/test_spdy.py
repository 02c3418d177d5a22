"""The SPDY/3.1 codec: frames, header blocks with the SPDY/3 dictionary, and a session over a real socket.

(End to end against the real kubectl: tests/e2e/test_exec.py.)
"""

from __future__ import annotations

import io
import socket
import threading
import zlib

import pytest

from vkcmd.kubeletapi import spdy
from vkcmd.kubeletapi.backend import Forbidden
from vkcmd.kubeletapi.streams import exit_status, negotiate


def test_the_dictionary_is_spdy3s():
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options") and spdy.DICTIONARY.endswith(b"enq=0.")


def test_header_blocks_share_one_zlib_stream_per_direction():
    sender, receiver = spdy.HeaderCodec(), spdy.HeaderCodec()
    first = sender.encode({"streamtype": "stdout", "port": ["80", "81"]})
    second = sender.encode({"streamtype": "stderr"})
    # the first block asks for the dictionary; a plain inflater cannot read it
    with pytest.raises(zlib.error):
        zlib.decompressobj().decompress(first)
    assert receiver.decode(first) == {"streamtype": ["stdout"], "port": ["80", "81"]}
    assert receiver.decode(second) == {"streamtype": ["stderr"]}
    with pytest.raises(spdy.ProtocolError):
        spdy.HeaderCodec().decode(second)  # out of order: not a block of a fresh stream


def test_frames_round_trip():
    out, inn = spdy.HeaderCodec(), spdy.HeaderCodec()
    wire = io.BytesIO(spdy.encode_syn_stream(out, 1, {"streamType": "error"}) + spdy.encode_data(1, b"abc", fin=True)
                      + spdy.encode_rst(3, spdy.RST_CANCEL) + spdy.encode_ping(7) + spdy.encode_goaway(5, 0))
    syn = spdy.read_frame(wire, inn)
    assert (syn.kind, syn.stream_id, syn.header("streamtype")) == (spdy.SYN_STREAM, 1, "error")
    data = spdy.read_frame(wire, inn)
    assert (data.kind, data.stream_id, data.data, data.fin) == (0, 1, b"abc", True)
    rst = spdy.read_frame(wire, inn)
    assert (rst.kind, rst.stream_id, rst.status) == (spdy.RST_STREAM, 3, spdy.RST_CANCEL)
    assert spdy.read_frame(wire, inn).ping_id == 7
    assert spdy.read_frame(wire, inn).kind == spdy.GOAWAY
    with pytest.raises(EOFError):
        spdy.read_frame(wire, inn)


def test_a_wrong_version_is_a_protocol_error():
    frame = bytearray(spdy.encode_ping(1))
    frame[1] = 2
    with pytest.raises(spdy.ProtocolError):
        spdy.read_frame(io.BytesIO(bytes(frame)), spdy.HeaderCodec())


def test_a_session_replies_refuses_answers_pings_and_delivers_data():
    server_sock, client_sock = socket.socketpair()
    received, opened = [], []

    def on_stream(frame):
        opened.append(frame.header("streamtype"))
        return frame.header("streamtype") != "bogus"

    session = spdy.Session(server_sock.makefile("rb"), server_sock.sendall, on_stream,
                           lambda sid, data, fin: received.append((sid, data, fin)))
    thread = threading.Thread(target=session.serve, name="test-spdy")
    thread.start()
    codec_out, codec_in = spdy.HeaderCodec(), spdy.HeaderCodec()
    client_sock.sendall(spdy.encode_syn_stream(codec_out, 1, {"streamtype": "stdin"})
                        + spdy.encode_syn_stream(codec_out, 3, {"streamtype": "bogus"})
                        + spdy.encode_ping(41) + spdy.encode_data(1, b"typed", fin=True))
    reader = client_sock.makefile("rb")
    reply = spdy.read_frame(reader, codec_in)
    refused = spdy.read_frame(reader, codec_in)
    pong = spdy.read_frame(reader, codec_in)
    assert (reply.kind, reply.stream_id) == (spdy.SYN_REPLY, 1)
    assert (refused.kind, refused.stream_id, refused.status) == (spdy.RST_STREAM, 3, spdy.RST_REFUSED_STREAM)
    assert (pong.kind, pong.ping_id) == (spdy.PING, 41)
    size = 3 * spdy.DATA_CHUNK + 1000
    sender = threading.Thread(target=session.send_data, args=(1, b"x" * size, True))  # more than a socket
    sender.start()                                                                   # buffer holds
    parts = [spdy.read_frame(reader, codec_in) for _ in range(4)]  # frames of at most DATA_CHUNK, FIN last
    sender.join(5)
    assert b"".join(p.data for p in parts) == b"x" * size and [p.fin for p in parts] == [False] * 3 + [True]
    assert max(len(p.data) for p in parts) == spdy.DATA_CHUNK
    client_sock.sendall(spdy.encode_goaway(0))
    thread.join(5)
    assert not thread.is_alive()
    assert opened == ["stdin", "bogus"] and received == [(1, b"typed", True)]
    for sock in (server_sock, client_sock):
        sock.close()


def test_protocol_negotiation_and_the_v4_status():
    assert negotiate(["v5.channel.k8s.io", "v4.channel.k8s.io"], ("v4.channel.k8s.io", "channel.k8s.io")) == \
        "v4.channel.k8s.io"
    assert negotiate(["channel.k8s.io"], ("v4.channel.k8s.io", "channel.k8s.io")) == "channel.k8s.io"
    with pytest.raises(Forbidden):
        negotiate(["v9.example"], ("v4.channel.k8s.io",))
    assert exit_status(0) == {"metadata": {}, "status": "Success"}
    failed = exit_status(3)
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
