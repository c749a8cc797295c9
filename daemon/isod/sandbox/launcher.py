"""The single-threaded launcher: install the filter, hand over the listener, exec.

Run as a fresh interpreter (``python -E -s -S -c ...``) so that nothing but this
thread exists when the filter goes on: every thread and process the target ever
makes inherits it (no TSYNC race). Protocol on the inherited Unix socket: one
message, ``b"ok"`` with the listener fd attached (SCM_RIGHTS), or
``b"err <errno> <text>"``. The launcher closes its own copy of the listener
before exec, so that the sandbox fails closed (ENOSYS) if the supervisor dies.
"""

from __future__ import annotations

import _socket  # not `socket`: it pulls in enum and selectors (8 ms)
import errno
import os
import sys

from . import seccomp
from .libc import libc

EXIT_SETUP_FAILED = 125   # as env(1)/timeout(1): the launcher itself failed
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def install(bpf: bytes, flags: int) -> int:
    """SPEC_ALLOW: where the kernel forces the Speculative Store Bypass
    mitigation on every seccomp'd task (`spec_store_bypass_disable=seccomp`,
    the default of many distributions), CPU-bound tests would run slower under
    isod than without it; isod filters process creation, not Spectre v4."""
    seccomp.set_no_new_privs()
    spec, killable = seccomp.SECCOMP_FILTER_FLAG_SPEC_ALLOW, seccomp.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    # kernels before 5.19 lack WAIT_KILLABLE_RECV, before 4.17 SPEC_ALLOW
    for extra in (spec | killable, spec, 0):
        try:
            return seccomp.install_filter(bpf, flags | extra)
        except OSError as e:
            if e.errno != errno.EINVAL or not extra:
                raise
    raise AssertionError("unreachable")


PR_CAPBSET_DROP = 24
CAP_SYS_PTRACE = 19


def drop_ptrace_capability() -> None:
    """Out of the bounding set before exec: a root worker then cannot override
    the daemon's non-dumpable flag (read /proc/<daemon>/mem, process_vm_writev).
    Tracing one's own children needs no capability. Best effort: without
    CAP_SETPCAP there is no such capability to drop in the first place."""
    libc.prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0)


def resolve(name: str) -> str:
    """PATH search done here, so the sandbox sees one execve, not one per PATH entry."""
    if "/" in name:
        return name
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        cand = os.path.join(d or ".", name)
        if os.access(cand, os.X_OK) and not os.path.isdir(cand):
            return cand
    raise FileNotFoundError(errno.ENOENT, "command not found", name)


def main(argv: list[str]) -> int:
    # argv: SOCK_FD BPF_FD MODE -- CMD ARGS...   (MODE: notif | trace | none)
    sock_fd, bpf_fd, mode = int(argv[0]), int(argv[1]), argv[2]
    cmd = argv[4:]
    sock = _socket.socket(fileno=sock_fd)
    bpf = _read_all(bpf_fd)
    drop_ptrace_capability()
    try:
        if mode == "none":
            # no filter: the owner follows this pid's tree, then says "go"
            sock.sendall(b"ready")
            if sock.recv(16) != b"go":
                return EXIT_SETUP_FAILED
        elif mode == "notif":
            listener = install(bpf, seccomp.SECCOMP_FILTER_FLAG_NEW_LISTENER)
            sock.sendmsg([b"ok"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, listener.to_bytes(4, sys.byteorder))])
            os.close(listener)
        else:
            # ptrace backend: say "ready", get seized, then on "go" install the
            # SECCOMP_RET_TRACE filter (none in events mode: empty program) and
            # confirm: the tracer's options must be set before the filter goes on,
            # or every trapped call would fail with ENOSYS.
            sock.sendall(b"ready")
            if sock.recv(16) != b"go":
                return EXIT_SETUP_FAILED
            if bpf:
                seccomp.set_no_new_privs()
                seccomp.install_filter(bpf, 0)
            sock.sendall(b"ok")
    except OSError as e:
        try:
            sock.sendall(f"err {e.errno} {e.strerror}".encode())
        except OSError:
            pass
        return EXIT_SETUP_FAILED
    sock.close()
    try:
        os.execv(resolve(cmd[0]), cmd)
    except FileNotFoundError:
        sys.stderr.write(f"isod: {cmd[0]}: command not found\n")
        return EXIT_NOT_FOUND
    except OSError as e:
        sys.stderr.write(f"isod: {cmd[0]}: cannot execute: {e.strerror}\n")
        return EXIT_CANNOT_EXEC
    return EXIT_CANNOT_EXEC  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
