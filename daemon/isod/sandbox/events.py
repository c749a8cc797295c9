"""What the sandbox records: one Event per trapped call, one ProcEvent per
process birth or death. The field names are the wire names: `isod trace --json`
prints them and the protobuf SpawnEvent carries the same ones.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field

from ..contract import NETWORK_CALLS, network_text

ALLOW = "allow"
DENY = "deny"
ENOSYS = "enosys"      # clone3 answered ENOSYS so that libc falls back to clone


@dataclass(slots=True)
class Event:
    t_ns: int                    # CLOCK_MONOTONIC when the supervisor received it
    pid: int                     # thread group id of the caller (0 if it vanished)
    tid: int                     # calling thread
    ppid: int                    # parent of pid (0 if unknown)
    syscall: str                 # fork, vfork, clone, clone3, execve, execveat, ptrace, io_uring_setup
    abi: str                     # x86_64 or i386
    decision: str                # allow, deny or enosys
    latency_ns: int              # receive -> answer in the supervisor
    path: str = ""               # execve/execveat: the program path as passed
    argv: list[str] = field(default_factory=list)
    cwd: str = ""
    clone_flags: int = 0
    argv_complete: bool = True   # False when the caller died or the read was cut
    child: int = 0               # fork/clone seen by the process events connector: the new pid
    # network calls (socket, socketcall, connect, sendmsg): what the kernel was asked for
    family: int = 0              # AF_INET 2, AF_INET6 10, AF_PACKET 17, ...
    sock_type: int = 0           # SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_RAW 3 (flags masked off)
    protocol: int = 0
    host: str = ""               # connect / sendmsg: the destination address ("" for socket)
    port: int = 0

    def command(self) -> str:
        """The attempted command, quoted as a shell would."""
        if self.argv:
            return shlex.join(self.argv)
        return self.path

    def describe(self) -> str:
        if self.syscall in ("execve", "execveat"):
            cmd = self.command() or "?"
            if self.path and self.argv and self.argv[0] != self.path:
                cmd = f"{cmd}  [{self.path}]"
            return f"{self.syscall}: {cmd}"
        if self.syscall in ("clone", "clone3"):
            return f"{self.syscall}(flags={self.clone_flags:#x})"
        if self.syscall in NETWORK_CALLS:
            return network_text(self)
        return self.syscall

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class ProcEvent:
    """A process appearing (fork), running a program (exec) or ending (exit),
    from the kernel's process events connector when available."""

    t_ns: int
    kind: str                    # fork, exec or exit
    pid: int
    ppid: int = 0
    path: str = ""               # exec: the program (/proc/PID/exe), argv, cwd: read
    argv: list[str] = field(default_factory=list)   # right after the exec, best effort
    cwd: str = ""
    argv_complete: bool = True
    exit_code: int | None = None    # exit: the status as exit(2) gave it
    exit_signal: int | None = None  # exit: the signal that killed it

    def to_dict(self) -> dict:
        return asdict(self)
