"""The daemon <-> worker framing over a real SEQPACKET socketpair."""

import threading

import pytest
from isod import channel

pytestmark = pytest.mark.small


def test_small_and_large_messages_round_trip_in_order():
    a, b = channel.pair()
    tx, rx = channel.Channel(a), channel.Channel(b)
    big = bytes(range(256)) * 2000          # 512 KB: several frames
    got = []
    reader = threading.Thread(target=lambda: got.extend(rx.recv() for _ in range(3)))
    reader.start()
    for m in (b"one", big, b""):
        tx.send(m)
    reader.join(5)
    assert got == [b"one", big, b""]


def test_nonblocking_recv_and_eof():
    a, b = channel.pair()
    tx, rx = channel.Channel(a), channel.Channel(b)
    assert rx.recv(block=False) is None
    tx.close()
    with pytest.raises(EOFError):
        rx.recv()
