"""Starting the launcher and getting the sandbox's handle back from it."""

from __future__ import annotations

import array
import errno
import os
import socket
import subprocess
import sys

import isod

from .box import SandboxError

_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(isod.__file__)))
# -E -s -S: the target's PYTHON* variables and site-packages stay out of the
# launcher; it imports only isod.sandbox.launcher and the stdlib.
_BOOT = (
    f"import sys; sys.path.insert(0, {_PKG_PARENT!r}); "
    "from isod.sandbox.launcher import main; sys.exit(main(sys.argv[1:]))"
)
SETUP_TIMEOUT = 30.0

_WHY = {
    errno.EBUSY: "seccomp user notification is already taken by an enclosing sandbox "
                 "(only one listener per filter chain: is this running inside isod or another "
                 "user-notif supervisor?); use --backend ptrace",
    errno.EINVAL: "this kernel does not support seccomp user notification "
                  "(SECCOMP_FILTER_FLAG_NEW_LISTENER, Linux 5.0+); use --backend ptrace",
    errno.ENOSYS: "this kernel has no seccomp(2); use --backend ptrace",
    errno.EACCES: "the kernel refused the filter (no_new_privs not set?)",
}


def launcher_argv(mode: str, sock_fd: int, bpf_fd: int, argv: list[str]) -> list[str]:
    return [sys.executable, "-E", "-s", "-S", "-c", _BOOT, str(sock_fd), str(bpf_fd), mode, "--", *argv]


class LauncherProcess:
    """The launcher child, with the socket it reports back on."""

    def __init__(self, argv: list[str], mode: str, program: bytes, *, pass_fds=(), **popen_kwargs):
        if not argv:
            raise SandboxError("no command given")
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            os.write(w, program)   # a few hundred bytes: fits the pipe buffer
        finally:
            os.close(w)
        try:
            self.popen = subprocess.Popen(
                launcher_argv(mode, child.fileno(), r, list(argv)),
                pass_fds=(child.fileno(), r, *pass_fds), **popen_kwargs,
            )
        except PermissionError as e:
            self.sock.close()
            raise SandboxError(f"cannot start the sandbox launcher: {e.strerror} (is this itself running "
                               "where spawning is denied, e.g. in a small test under isod?)") from e
        finally:
            child.close()
            os.close(r)
        self.sock.settimeout(SETUP_TIMEOUT)

    def receive_listener(self) -> int:
        """The listener fd the launcher sends, or SandboxError saying why not."""
        fds = array.array("i")
        try:
            msg, anc, _flags, _addr = self.sock.recvmsg(256, socket.CMSG_SPACE(fds.itemsize))
        except TimeoutError:
            self.popen.kill()
            raise SandboxError(f"the launcher did not report within {SETUP_TIMEOUT:.0f} s") from None
        finally:
            self.sock.close()
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        if msg == b"ok" and fds:
            for extra in fds[1:]:
                os.close(extra)
            return fds[0]
        for fd in fds:
            os.close(fd)
        self.fail(msg)

    def ready(self) -> None:
        """Mode "none": wait until the launcher runs (its own exec is over)."""
        try:
            msg = self.sock.recv(16)
        except TimeoutError:
            self.popen.kill()
            raise SandboxError(f"the launcher did not report within {SETUP_TIMEOUT:.0f} s") from None
        if msg != b"ready":
            self.sock.close()
            self.fail(msg)

    def go(self) -> None:
        """Mode "none": let the launcher exec the command (the owner is ready)."""
        try:
            self.sock.sendall(b"go")
        except OSError:
            pass          # it died already: the owner sees its exit status
        finally:
            self.sock.close()

    def fail(self, msg: bytes):
        self.popen.wait()
        if msg.startswith(b"err "):
            code, _, text = msg[4:].decode(errors="replace").partition(" ")
            why = _WHY.get(int(code), text)
            raise SandboxError(f"cannot install the seccomp filter: {text} ({why})")
        raise SandboxError(f"the sandbox launcher exited with status {self.popen.returncode} "
                           "before installing the filter")
