"""The daemon <-> worker link: protobuf messages over a SOCK_SEQPACKET socketpair.

SEQPACKET keeps message boundaries, so one recv is one frame and two threads
may read the same end under a lock without tearing a message (the daemon reads
a worker's end from its reader thread and from the supervisor, right before a
trap decision). Frames are at most CHUNK bytes; a message larger than that (a
report with a long captured output) is split, the first byte of each frame
saying whether more follow.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

CHUNK = 60 * 1024
_MORE, _LAST = b"\x01", b"\x00"


def pair() -> tuple[socket.socket, socket.socket]:
    """(daemon end, worker end); the worker end is to be inherited."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return a, b


class Channel:
    """Frames messages onto one end of the pair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._partial: list[bytes] = []
        self.closed = False      # waiting() met the other end's close

    def waiting(self) -> Iterator[bytes]:
        """Every whole message already here, without blocking."""
        while True:
            try:
                raw = self.recv(block=False)
            except (EOFError, OSError):
                self.closed = True
                return
            if raw is None:
                return
            yield raw

    def send(self, payload: bytes) -> None:
        if len(payload) <= CHUNK:
            self.sock.sendall(_LAST + payload)
            return
        for off in range(0, len(payload), CHUNK):
            piece = payload[off:off + CHUNK]
            self.sock.sendall((_LAST if off + CHUNK >= len(payload) else _MORE) + piece)

    def recv(self, block: bool = True) -> bytes | None:
        """The next whole message; None on EOF, or (block=False) if none is waiting."""
        flags = 0 if block else socket.MSG_DONTWAIT
        while True:
            try:
                frame = self.sock.recv(CHUNK + 1, flags)
            except BlockingIOError:
                return None
            except ConnectionResetError:
                frame = b""
            if not frame:
                self._partial.clear()
                raise EOFError("the other end of the worker channel closed")
            if frame[:1] == _MORE:
                self._partial.append(frame[1:])
                flags = 0   # the rest of a message is already on its way
                continue
            if self._partial:
                self._partial.append(frame[1:])
                out = b"".join(self._partial)
                self._partial.clear()
                return out
            return frame[1:]

    def send_fds(self, payload: bytes, fds: list[int]) -> None:
        """One frame (at most CHUNK bytes) with file descriptors attached."""
        if len(payload) > CHUNK:
            raise ValueError("a message with fds must fit one frame")
        socket.send_fds(self.sock, [_LAST + payload], fds)

    def recv_fds(self, maxfds: int) -> tuple[bytes, list[int]]:
        """One frame sent by send_fds and its fds (blocking); EOFError at EOF."""
        frame, fds, _flags, _addr = socket.recv_fds(self.sock, CHUNK + 1, maxfds)
        if not frame:
            for fd in fds:
                os.close(fd)
            raise EOFError("the other end of the worker channel closed")
        return frame[1:], fds

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def from_fd(fd: int) -> Channel:
    return Channel(socket.socket(fileno=fd))
