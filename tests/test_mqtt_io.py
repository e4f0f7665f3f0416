"""gateway.spine.mqtt's socket wrapper for the ingest: paho's small reads served from large ones, with
nothing lost or reordered at any split of the stream (a real socket pair), and a real broker."""

from __future__ import annotations

import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.spine.mqtt import ReadBufferedSocket, new_client


def _drain(wrapped: ReadBufferedSocket, sizes: list[int]) -> bytes:
    out = bytearray()
    i = 0
    while True:
        try:
            chunk = wrapped.recv(sizes[i % len(sizes)])
        except BlockingIOError:
            if wrapped.pending():
                raise AssertionError("blocked with bytes pending") from None
            return bytes(out)
        assert chunk, "end of stream before the peer closed"
        out += chunk
        i += 1


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=200_000), sizes=st.lists(st.integers(1, 70_000), min_size=1, max_size=8))
def test_any_read_sizes_return_the_stream_in_order(data, sizes):
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        b.setblocking(False)
        wrapped = ReadBufferedSocket(b)
        got = bytearray()
        sent = 0
        while sent < len(data) or wrapped.pending() or len(got) < len(data):
            if sent < len(data):  # more than a socket buffer holds: send while the reader drains
                try:
                    sent += a.send(data[sent:sent + 65536])
                except BlockingIOError:
                    pass
            got += _drain(wrapped, sizes)
        assert bytes(got) == data
        assert wrapped.pending() == 0
    finally:
        a.close()
        b.close()


def test_end_of_stream_and_socket_calls_pass_through():
    a, b = socket.socketpair()
    wrapped = ReadBufferedSocket(b)
    a.sendall(b"\x30\x05hello")
    assert wrapped.recv(1) == b"\x30"
    assert wrapped.pending() == 6
    assert wrapped.recv(1) == b"\x05" and wrapped.recv(5) == b"hello"
    assert wrapped.fileno() == b.fileno()
    assert wrapped.getsockname() == b.getsockname()  # anything else is the socket's
    a.close()
    assert wrapped.recv(1) == b""  # the peer closed: paho sees the end of the stream
    wrapped.close()
    assert b.fileno() == -1  # closing the wrapper closes the socket


def test_only_plain_tcp_is_wrapped(broker):
    client = new_client("wrap-check", clean=True, read_buffer=True)
    client.connect("127.0.0.1", broker.port)
    try:
        assert isinstance(client.socket(), ReadBufferedSocket)
    finally:
        client.disconnect()
    plain = new_client("plain-check", clean=True)
    plain.connect("127.0.0.1", broker.port)
    try:
        assert type(plain.socket()) is socket.socket
    finally:
        plain.disconnect()
