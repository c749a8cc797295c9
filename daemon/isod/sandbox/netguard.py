"""Network rules for a process tree from the kernel's cgroup socket hooks.

A tree in a cgroup (v2) gets five tiny BPF programs, assembled here and loaded
with bpf(2) through ctypes (no compiler, no libbpf):

- ``connect`` of an AF_INET / AF_INET6 socket (BPF_CGROUP_INET4_CONNECT,
  INET6_CONNECT), ``sendto``/``sendmsg`` with an address on an unconnected UDP
  socket (UDP4_SENDMSG, UDP6_SENDMSG): the kernel runs them on its own copy of
  the address, in the calling thread, before anything leaves; returning 0
  fails the call with EPERM;
- socket creation (BPF_CGROUP_INET_SOCK_CREATE), for the modes that judge
  any use of an inet socket.

What they do is read from a word in an mmap-able array map (the *mode*),
which the tree's worker writes before each test's setup (the daemon, when
the worker does not): no supervisor, no trap, so no call can fail because a
signal arrived (docs/kernel-notes.md, interruptible wait), and a loopback
connect costs a few dozen instructions in the kernel (≈25 ns measured). What
they record (time, pid/tid, family, type, protocol, address, port, decision)
goes into a queue map the owner drains when it cuts a test's record.

Loopback: 127.0.0.0/8, ::1, their IPv4-mapped forms (::ffff:127.x.y.z), and
the unspecified addresses 0.0.0.0 and :: (Linux connects those to the local
host). AF_UNIX never reaches these hooks.

Needs cgroup v2 (a controller-less hierarchy is enough: hybrid hosts mount it
at /sys/fs/cgroup/unified) and CAP_BPF + CAP_NET_ADMIN (or CAP_SYS_ADMIN).
``probe()`` says whether it works here and why not.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass

from . import cgroupfs
from .events import ALLOW, DENY, Event
from .libc import libc

NR_BPF = 321

# bpf(2) commands
BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_MAP_LOOKUP_AND_DELETE_ELEM = 21

BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_QUEUE = 22
BPF_PROG_TYPE_CGROUP_SOCK = 9
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18

BPF_CGROUP_INET_SOCK_CREATE = 2
BPF_CGROUP_INET4_CONNECT = 10
BPF_CGROUP_INET6_CONNECT = 11
BPF_CGROUP_UDP4_SENDMSG = 14
BPF_CGROUP_UDP6_SENDMSG = 15
BPF_F_ALLOW_MULTI = 2

# helpers
FN_MAP_LOOKUP_ELEM = 1
FN_KTIME_GET_NS = 5          # CLOCK_MONOTONIC, as time.monotonic_ns()
FN_GET_CURRENT_PID_TGID = 14
FN_MAP_PUSH_ELEM = 87
FN_GET_NS_CURRENT_PID_TGID = 120   # pids as a pid namespace sees them (the daemon's, in a container)

# --- modes (the one value the owner changes) ---------------------------------
OFF = 0               # allow everything, record nothing (large, xlarge; --isod-network off; collection)
LOOPBACK = 1          # medium, enforced: deny and record what is not loopback
LOOPBACK_RECORD = 2   # medium, not enforced (warn, off): record what is not loopback, deny nothing
NONE_RECORD = 3       # small, not enforced: record every inet socket and connection, deny nothing
NONE = 4              # small, enforced: deny and record every inet socket and connection

# what a record says happened (the program that made it)
KIND_CONNECT4, KIND_CONNECT6, KIND_SENDMSG4, KIND_SENDMSG6, KIND_SOCKET = 1, 2, 3, 4, 5
KIND_SYSCALL = {KIND_CONNECT4: "connect", KIND_CONNECT6: "connect", KIND_SENDMSG4: "sendmsg",
                KIND_SENDMSG6: "sendmsg", KIND_SOCKET: "socket"}

# one record in the queue: t_ns, pid_tgid, kind, allowed, family, type, protocol, port (network order), ip[16]
RECORD = struct.Struct("=QQIIIIII16s")
QUEUE_ENTRIES = 4096

# struct bpf_sock_addr / struct bpf_sock offsets (uapi/linux/bpf.h)
SA_USER_FAMILY, SA_USER_IP4, SA_USER_IP6, SA_USER_PORT, SA_TYPE, SA_PROTOCOL = 0, 4, 8, 24, 32, 36
SK_FAMILY, SK_TYPE, SK_PROTOCOL = 4, 8, 12


# --- a small BPF assembler -----------------------------------------------------
R0, R1, R2, R3, R4, R6, R7, R8, R9, R10 = 0, 1, 2, 3, 4, 6, 7, 8, 9, 10


class Asm:
    """Builds a program instruction by instruction; jumps name labels."""

    def __init__(self) -> None:
        self.insns: list[list] = []       # [code, dst, src, off or label, imm]
        self.labels: dict[str, int] = {}

    def _i(self, code: int, dst: int = 0, src: int = 0, off=0, imm: int = 0) -> None:
        self.insns.append([code, dst, src, off, imm])

    def label(self, name: str) -> None:
        self.labels[name] = len(self.insns)

    def mov(self, dst: int, src: int) -> None:
        self._i(0xBF, dst, src)                       # ALU64 | MOV | X

    def movi(self, dst: int, imm: int) -> None:
        self._i(0xB7, dst, imm=imm)                   # ALU64 | MOV | K

    def addi(self, dst: int, imm: int) -> None:
        self._i(0x07, dst, imm=imm)                   # ALU64 | ADD | K

    def andi(self, dst: int, imm: int) -> None:
        self._i(0x57, dst, imm=imm)                   # ALU64 | AND | K

    def ldxw(self, dst: int, src: int, off: int) -> None:
        self._i(0x61, dst, src, off)                  # LDX | W | MEM

    def stxw(self, dst: int, off: int, src: int) -> None:
        self._i(0x63, dst, src, off)                  # STX | W | MEM

    def stxdw(self, dst: int, off: int, src: int) -> None:
        self._i(0x7B, dst, src, off)                  # STX | DW | MEM

    def stw(self, dst: int, off: int, imm: int) -> None:
        self._i(0x62, dst, off=off, imm=imm)          # ST | W | MEM

    def jeq(self, dst: int, imm: int, to: str) -> None:
        self._i(0x16, dst, off=to, imm=imm)           # JMP32 | JEQ | K: the values are u32

    def jne(self, dst: int, imm: int, to: str) -> None:
        self._i(0x56, dst, off=to, imm=imm)           # JMP32 | JNE | K

    def ja(self, to: str) -> None:
        self._i(0x05, off=to)

    def call(self, helper: int) -> None:
        self._i(0x85, imm=helper)

    def exit(self) -> None:
        self._i(0x95)

    def ld_map(self, dst: int, map_fd: int) -> None:
        self._i(0x18, dst, 1, 0, map_fd)              # LD | DW | IMM, src BPF_PSEUDO_MAP_FD
        self._i(0, 0, 0, 0, 0)

    def ld64(self, dst: int, value: int) -> None:
        self._i(0x18, dst, 0, 0, value & 0xFFFFFFFF)  # LD | DW | IMM: two instructions
        self._i(0, 0, 0, 0, value >> 32)

    def assemble(self) -> bytes:
        out = []
        for pc, (code, dst, src, off, imm) in enumerate(self.insns):
            if isinstance(off, str):
                off = self.labels[off] - pc - 1
            out.append(struct.pack("<BBhi", code, (src << 4) | dst, off, _imm32(imm & 0xFFFFFFFF)))
        return b"".join(out)


def _imm32(value: int) -> int:
    """A u32 as the signed 32-bit immediate the instruction holds."""
    return value - (1 << 32) if value >= 1 << 31 else value


def _load_mode(a: Asm, mode_fd: int) -> None:
    """r6 = ctx, r7 = mode (0 when the map has none)."""
    a.mov(R6, R1)
    a.stw(R10, -4, 0)
    a.mov(R2, R10)
    a.addi(R2, -4)
    a.ld_map(R1, mode_fd)
    a.call(FN_MAP_LOOKUP_ELEM)
    a.movi(R7, 0)
    a.jeq(R0, 0, "have_mode")
    a.ldxw(R7, R0, 0)
    a.label("have_mode")


# Where a record's pid and tid come from: "tgid" (the initial pid namespace's
# numbers), ("ns", dev, ino) (those of the daemon's own pid namespace), or None.
PidSource = "str | tuple[str, int, int] | None"
PROC_PID_INIT_INO = 0xEFFFFFFC


def pid_source() -> PidSource:
    try:
        st = os.stat("/proc/self/ns/pid")
    except OSError:
        return "tgid"
    return "tgid" if st.st_ino == PROC_PID_INIT_INO else ("ns", st.st_dev, st.st_ino)


def _push_record(a: Asm, queue_fd: int, kind: int, fields: list[tuple[int | None, int]],
                 pids: PidSource = "tgid") -> None:
    """The record on the stack (r10-64 .. r10-8) and into the queue; r9 = allowed.
    fields: (ctx offset or None for zero, stack offset) for family .. ip."""
    a.call(FN_KTIME_GET_NS)
    a.stxdw(R10, -64, R0)
    if pids == "tgid":
        a.call(FN_GET_CURRENT_PID_TGID)
        a.stxdw(R10, -56, R0)
    elif pids is None:
        a.stw(R10, -56, 0)
        a.stw(R10, -52, 0)
    else:
        _ns, dev, ino = pids
        a.ld64(R1, dev)
        a.ld64(R2, ino)
        a.mov(R3, R10)
        a.addi(R3, -72)                             # struct bpf_pidns_info {u32 pid (the thread); u32 tgid}
        a.movi(R4, 8)
        a.call(FN_GET_NS_CURRENT_PID_TGID)
        a.jeq(R0, 0, "ns_ok")
        a.stw(R10, -72, 0)
        a.stw(R10, -68, 0)
        a.label("ns_ok")
        a.ldxw(R1, R10, -72)
        a.stxw(R10, -56, R1)                        # low half: the thread, as get_current_pid_tgid
        a.ldxw(R1, R10, -68)
        a.stxw(R10, -52, R1)
    a.stw(R10, -48, kind)
    a.stxw(R10, -44, R9)
    for ctx_off, stack_off in fields:
        if ctx_off is None:
            a.stw(R10, stack_off, 0)
        else:
            a.ldxw(R1, R6, ctx_off)
            a.stxw(R10, stack_off, R1)
    a.ld_map(R1, queue_fd)
    a.mov(R2, R10)
    a.addi(R2, -64)
    a.movi(R3, 0)
    a.call(FN_MAP_PUSH_ELEM)
    a.mov(R0, R9)
    a.exit()


def addr_program(v6: bool, kind: int, mode_fd: int, queue_fd: int, pids: PidSource = "tgid") -> bytes:
    """connect / UDP sendmsg hook: judge the destination by the mode."""
    a = Asm()
    _load_mode(a, mode_fd)
    a.jeq(R7, OFF, "allow")
    a.movi(R8, 0)                                   # r8: the destination is the local host
    if not v6:
        a.ldxw(R1, R6, SA_USER_IP4)                 # network order, read as a little-endian u32
        a.jeq(R1, 0, "local")                       # 0.0.0.0
        a.andi(R1, 0xFF)
        a.jeq(R1, 127, "local")                     # 127.0.0.0/8
        a.ja("judged")
    else:
        a.ldxw(R1, R6, SA_USER_IP6)
        a.jne(R1, 0, "judged")
        a.ldxw(R1, R6, SA_USER_IP6 + 4)
        a.jne(R1, 0, "judged")
        a.ldxw(R1, R6, SA_USER_IP6 + 8)
        a.jeq(R1, 0, "v6_last")
        a.jne(R1, _imm32(0xFFFF0000), "judged")     # ::ffff:a.b.c.d (IPv4-mapped)
        a.ldxw(R1, R6, SA_USER_IP6 + 12)
        a.jeq(R1, 0, "local")
        a.andi(R1, 0xFF)
        a.jeq(R1, 127, "local")
        a.ja("judged")
        a.label("v6_last")
        a.ldxw(R1, R6, SA_USER_IP6 + 12)
        a.jeq(R1, 0, "local")                       # ::
        a.jeq(R1, 0x01000000, "local")              # ::1
        a.ja("judged")
    a.label("local")
    a.movi(R8, 1)
    a.label("judged")
    a.movi(R9, 1)
    a.jeq(R7, NONE, "deny")
    a.jeq(R7, NONE_RECORD, "record")
    a.jne(R8, 0, "allow")
    a.jeq(R7, LOOPBACK, "deny")
    a.jeq(R7, LOOPBACK_RECORD, "record")
    a.ja("allow")
    a.label("deny")
    a.movi(R9, 0)
    a.label("record")
    ip = ([(SA_USER_IP6 + 4 * i, -24 + 4 * i) for i in range(4)] if v6 else
          [(SA_USER_IP4, -24), (None, -20), (None, -16), (None, -12)])
    _push_record(a, queue_fd, kind, [(SA_USER_FAMILY, -40), (SA_TYPE, -36), (SA_PROTOCOL, -32),
                                     (SA_USER_PORT, -28), *ip], pids)
    a.label("allow")
    a.movi(R0, 1)
    a.exit()
    return a.assemble()


def sock_program(mode_fd: int, queue_fd: int, pids: PidSource = "tgid") -> bytes:
    """inet socket creation: judged only where no inet socket is allowed at all."""
    a = Asm()
    _load_mode(a, mode_fd)
    a.movi(R9, 1)
    a.jeq(R7, NONE_RECORD, "record")
    a.jeq(R7, NONE, "deny")
    a.movi(R0, 1)
    a.exit()
    a.label("deny")
    a.movi(R9, 0)
    a.label("record")
    _push_record(a, queue_fd, KIND_SOCKET, [(SK_FAMILY, -40), (SK_TYPE, -36), (SK_PROTOCOL, -32), (None, -28),
                                            (None, -24), (None, -20), (None, -16), (None, -12)], pids)
    return a.assemble()


# --- bpf(2) --------------------------------------------------------------------
libc.syscall.restype = ctypes.c_long
ATTR_SIZE = 128     # larger than every command's attr used here; the tail must be zero


def bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr.ljust(ATTR_SIZE, b"\0"), ATTR_SIZE)
    ret = libc.syscall(NR_BPF, cmd, buf, ATTR_SIZE)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def map_create(map_type: int, key_size: int, value_size: int, entries: int, name: bytes, flags: int = 0) -> int:
    return bpf(BPF_MAP_CREATE, struct.pack("=IIIIIII16s", map_type, key_size, value_size, entries, flags, 0, 0,
                                           name[:15]))


class _Popper:
    """BPF_MAP_LOOKUP_AND_DELETE_ELEM on a queue, with its buffers made once."""

    def __init__(self, map_fd: int) -> None:
        self.value = ctypes.create_string_buffer(RECORD.size)
        attr = struct.pack("=IIQQQ", map_fd, 0, 0, ctypes.addressof(self.value), 0).ljust(ATTR_SIZE, b"\0")
        self.attr = ctypes.create_string_buffer(attr, ATTR_SIZE)

    def pop(self) -> bytes | None:
        if libc.syscall(NR_BPF, BPF_MAP_LOOKUP_AND_DELETE_ELEM, self.attr, ATTR_SIZE) < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                return None
            raise OSError(err, os.strerror(err))
        return self.value.raw


def prog_load(prog_type: int, attach_type: int, insns: bytes, name: bytes) -> int:
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")     # the helpers used are not GPL-only; any license string loads
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack("=IIQQIIQII16sII", prog_type, len(insns) // 8, ctypes.addressof(code), ctypes.addressof(lic),
                       0, 0, 0, 0, 0, name[:15], 0, attach_type)
    try:
        return bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EACCES):
            raise
        # load again with the verifier's log: say why
        attr = struct.pack("=IIQQIIQII16sII", prog_type, len(insns) // 8, ctypes.addressof(code),
                           ctypes.addressof(lic), 1, len(log), ctypes.addressof(log), 0, 0, name[:15], 0, attach_type)
        try:
            return bpf(BPF_PROG_LOAD, attr)
        except OSError as e2:
            text = log.value.decode(errors="replace").strip().splitlines()
            raise OSError(e2.errno, f"{e2.strerror}: {' / '.join(text[-3:])}") from None


def prog_attach(cgroup_fd: int, prog_fd: int, attach_type: int) -> None:
    bpf(BPF_PROG_ATTACH, struct.pack("=IIIII", cgroup_fd, prog_fd, attach_type, BPF_F_ALLOW_MULTI, 0))


def prog_detach(cgroup_fd: int, prog_fd: int, attach_type: int) -> None:
    bpf(BPF_PROG_DETACH, struct.pack("=IIIII", cgroup_fd, prog_fd, attach_type, 0, 0))


# --- cgroup v2 -------------------------------------------------------------------
CGROUP_FS = "/sys/fs/cgroup"


def v2_root() -> str | None:
    for candidate in (CGROUP_FS, os.path.join(CGROUP_FS, "unified")):
        try:
            with open("/proc/self/mountinfo") as f:
                mounted = any(line.split(" - ")[1].startswith("cgroup2 ") and line.split()[4] == candidate
                              for line in f if " - " in line)
        except OSError:
            mounted = os.path.exists(os.path.join(candidate, "cgroup.controllers"))
        if mounted:
            return candidate
    return None


def own_v2_dir() -> str | None:
    """This process's cgroup v2 directory, or None without a v2 hierarchy."""
    return cgroup_v2_of("self")


def cgroup_v2_of(pid: int | str) -> str | None:
    root = v2_root()
    if root is None:
        return None
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                hid, controllers, path = line.rstrip("\n").split(":", 2)
                if hid == "0" and controllers == "":
                    return os.path.join(root, path.lstrip("/"))
    except OSError:
        pass
    return None


# --- what a record means ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Attempt:
    t_ns: int
    pid: int
    tid: int
    kind: int
    allowed: bool
    family: int
    type: int
    protocol: int
    host: str
    port: int

    @classmethod
    def parse(cls, raw: bytes) -> Attempt:
        t_ns, pid_tgid, kind, allowed, family, typ, proto, port, ip = RECORD.unpack(raw)
        if kind == KIND_SOCKET:
            host = ""
        elif family == socket.AF_INET6:
            host = socket.inet_ntop(socket.AF_INET6, ip)
        else:
            host = socket.inet_ntop(socket.AF_INET, ip[:4])
        return cls(t_ns, pid_tgid >> 32, pid_tgid & 0xFFFFFFFF, kind, bool(allowed), family, typ & 0xF, proto, host,
                   socket.ntohs(port & 0xFFFF))

    def event(self) -> Event:
        return Event(self.t_ns, self.pid, self.tid, 0, KIND_SYSCALL[self.kind], "", ALLOW if self.allowed else DENY,
                     0, family=self.family, sock_type=self.type, protocol=self.protocol, host=self.host,
                     port=self.port)


# --- the guard of one tree ---------------------------------------------------------
_HOOKS = (
    (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT, False, KIND_CONNECT4, b"isod_connect4"),
    (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_CONNECT, True, KIND_CONNECT6, b"isod_connect6"),
    (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_SENDMSG, False, KIND_SENDMSG4, b"isod_sendmsg4"),
    (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP6_SENDMSG, True, KIND_SENDMSG6, b"isod_sendmsg6"),
    (BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_CREATE, False, KIND_SOCKET, b"isod_sock"),
)
BPF_F_MMAPABLE = 1 << 10
# The mode map is an mmap-able array of two u32 (each in an 8-byte slot): the
# mode the hooks read (written by the daemon only: the worker has no copy).
MODE_SLOT = 0


class NetGuard:
    """The maps and programs of one tree, attached to one or more cgroups.

    ``place(pid)`` makes a cgroup of its own (``isod-<owner pid>-n<pid>``
    in this process's cgroup) and moves pid into it; ``attach(path)`` adds
    the programs to a cgroup someone else made (the limits' cgroup, which a
    pure cgroup v2 host moves the tree into). ``mode`` is read by every hook
    from a word the owner, or the tree's worker through ``mode_fd`` (mmap),
    writes; ``drain()`` returns what the hooks recorded since the last call.
    """

    def __init__(self) -> None:
        self._fds: list[int] = []
        self._attached: list[tuple[int, int, int]] = []     # (cgroup fd, prog fd, attach type)
        self._own_dir: str | None = None
        self._lock = threading.Lock()
        self._popper: _Popper | None = None
        self.mode_fd = map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 2, b"isod_mode", BPF_F_MMAPABLE)
        self._fds.append(self.mode_fd)
        try:
            self.word = mmap.mmap(self.mode_fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self.queue_fd = map_create(BPF_MAP_TYPE_QUEUE, 0, RECORD.size, QUEUE_ENTRIES, b"isod_net")
            self._fds.append(self.queue_fd)
            self._progs = []
            for prog_type, attach, v6, kind, name in _HOOKS:
                fd = self._load(prog_type, attach, v6, kind, name)
                self._fds.append(fd)
                self._progs.append((fd, attach))
        except OSError:
            self.close()
            raise
        self._popper = _Popper(self.queue_fd)

    def _load(self, prog_type: int, attach: int, v6: bool, kind: int, name: bytes) -> int:
        """The program, with the pids of the daemon's pid namespace in its
        records; kernels that do not give these programs a pid helper (the
        helpers reached every program type in Linux 6.10) get pid 0."""
        global _pids
        while True:
            insns = (sock_program(self.mode_fd, self.queue_fd, _pids) if kind == KIND_SOCKET else
                     addr_program(v6, kind, self.mode_fd, self.queue_fd, _pids))
            try:
                return prog_load(prog_type, attach, insns, name)
            except OSError as e:
                if _pids is None or e.errno not in (errno.EINVAL, errno.EACCES):
                    raise
                _pids = "tgid" if _pids != "tgid" else None

    @property
    def mode(self) -> int:
        return _U32.unpack_from(self.word, MODE_SLOT)[0]

    def set_mode(self, mode: int) -> None:
        """No-op once closed: the tree may be gone (and its hooks with it)
        before its owner has read the tree's last messages."""
        with self._lock:
            if self._fds:
                _U32.pack_into(self.word, MODE_SLOT, mode)

    def attach(self, cgroup_dir: str) -> None:
        fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        done = []
        try:
            for prog_fd, attach in self._progs:
                prog_attach(fd, prog_fd, attach)
                done.append((fd, prog_fd, attach))
        except OSError:
            for _fd, prog_fd, attach in done:
                _quiet(prog_detach, fd, prog_fd, attach)
            os.close(fd)
            raise
        with self._lock:
            self._attached += done

    def place(self, pid: int, name: str | None = None) -> str:
        """Move pid (and what it starts from then on) into a fresh cgroup with the programs."""
        parent = own_v2_dir()
        if parent is None:
            raise OSError(errno.ENOENT, "no cgroup v2 hierarchy mounted")
        path = os.path.join(parent, name or f"isod-{os.getpid()}-n{pid}")
        os.mkdir(path, 0o755)
        self._own_dir = path
        self.attach(path)
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(pid))
        return path

    def drain(self) -> list[Attempt]:
        out = []
        with self._lock:
            if self._popper is None:
                return out
            while (raw := self._popper.pop()) is not None:
                out.append(Attempt.parse(raw))
        return out

    def close(self) -> None:
        with self._lock:
            for cg_fd, prog_fd, attach in self._attached:
                _quiet(prog_detach, cg_fd, prog_fd, attach)
            for cg_fd in {a[0] for a in self._attached}:
                os.close(cg_fd)
            self._attached = []
            word = getattr(self, "word", None)
            if word is not None:
                word.close()
            for fd in self._fds:
                os.close(fd)
            self._fds = []
            self._popper = None
        if self._own_dir is not None:
            _remove_cgroup(self._own_dir)
            self._own_dir = None


_U32 = struct.Struct("=I")
_pids: PidSource = pid_source()


def mode_for(size: str | None, enforcing: bool = True, network: bool = True, record_all: bool = False) -> int:
    """The hooks' mode while a test of this size runs (None: no test).
    ``record_all`` (enforcement off): every size's network use is recorded,
    denied nowhere, for the report and the size advisor."""
    if not network or size is None:
        return OFF
    if record_all:
        return NONE_RECORD
    if size == "small":
        return NONE if enforcing else NONE_RECORD
    if size == "medium":
        return LOOPBACK if enforcing else LOOPBACK_RECORD
    return OFF


# --- a sandboxed tree's network rule ----------------------------------------------
ENV_CLASS = "ISOD_WORKER_CLASS"     # a daemon worker's class: the size of every test it runs
ENV_NETWORK = "ISOD_NETWORK"        # on | off: the client's --isod-network
ENV_ENFORCEMENT = "ISOD_ENFORCEMENT"  # strict | warn | off: the client's enforcement


@dataclass(frozen=True)
class NetConfig:
    network: bool = True       # enforce/record the network rules at all
    enforcing: bool = True     # deny (strict) or only record (warn, off)
    record_all: bool = False   # off: record every size's network use (the report, the size advisor)

    @classmethod
    def from_env(cls, env) -> NetConfig:
        env = os.environ if env is None else env
        enforcement = env.get(ENV_ENFORCEMENT, "strict").strip().lower()
        return cls(network=env.get(ENV_NETWORK, "on").strip().lower() not in ("off", "0", "no", "false"),
                   enforcing=enforcement in ("", "strict"), record_all=enforcement == "off")


class TreeNet:
    """A NetGuard on one sandboxed tree: placed on its cgroup before it runs
    (or right after), its records delivered to the tree's Box as Events when
    the owner settles it, gone when the owner releases it."""

    def __init__(self, guard: NetGuard, box, config: NetConfig) -> None:
        self.guard = guard
        self.box = box
        self.config = config
        self.note = ""

    def set_size(self, size: str | None) -> None:
        """The running test's size, written by the daemon at its start unless
        the worker writes it itself (before setup: no window where the last
        test's rule judges the next one)."""
        self.guard.set_mode(mode_for(size, self.config.enforcing, self.config.network, self.config.record_all))

    def flush(self) -> None:
        for attempt in self.guard.drain():
            ev = attempt.event()
            ev.ppid = _parent(ev.pid)
            self.box.record(ev)

    def close(self) -> None:
        self.flush()
        self.guard.close()


def _parent(pid: int) -> int:
    """The parent of a recorded caller, if it still runs (0 otherwise)."""
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


_trees: dict[int, TreeNet] = {}
_trees_lock = threading.Lock()


def for_pid(pid: int) -> TreeNet | None:
    """The network guard of the tree rooted at pid (the limits use it)."""
    with _trees_lock:
        return _trees.get(pid)


def prepare(popen_kwargs: dict, fixed_size: str | None = None) -> tuple[NetGuard | None, NetConfig, str]:
    """Before a tree is launched: a guard (or None, with the reason).
    ``fixed_size``: the tree runs under this size's rule only (isod trace
    --size; a daemon's worker, whose class ISOD_WORKER_CLASS names the size
    of all its tests): no guard when that rule allows every network call.
    The mode word stays the owner's: no test can write its own rule."""
    config = NetConfig.from_env(popen_kwargs.get("env"))
    worker_class = (popen_kwargs.get("env") or {}).get(ENV_CLASS)
    if worker_class:
        fixed_size = worker_class
    if not config.network:
        return None, config, "--isod-network off"
    if fixed_size is not None and mode_for(fixed_size, config.enforcing, config.network, config.record_all) == OFF:
        return None, config, f"{fixed_size}: any network"
    ok, why = probe()
    if not ok:
        return None, config, why
    try:
        guard = NetGuard()
    except OSError as e:
        return None, config, f"cgroup socket hooks unavailable: {e.strerror or e}"
    return guard, config, ""


def attach_tree(guard: NetGuard | None, config: NetConfig, box, initial_size: str | None = None) -> TreeNet | None:
    """Place the guard on the launched tree (box.pid), set its first mode,
    and hook it to the box: settle() delivers its records, release() ends it."""
    if guard is None:
        return None
    try:
        guard.place(box.pid)
    except OSError as e:
        guard.close()
        sys.stderr.write(f"isod: network rules not enforced for pid {box.pid}: {e.strerror or e}\n")
        return None
    tree = TreeNet(guard, box, config)
    guard.set_mode(mode_for(initial_size, config.enforcing, config.network, config.record_all))
    before_flush, before_release = box.flush, box.on_release

    def flush() -> None:
        if before_flush is not None:
            before_flush()
        tree.flush()

    def release() -> None:
        if before_release is not None:
            before_release()
        with _trees_lock:
            _trees.pop(box.pid, None)
        tree.close()

    box.flush, box.on_release = flush, release
    box.net = tree
    with _trees_lock:
        _trees[box.pid] = tree
        if box.on_event is not None:
            _live.add(tree)
            _start_poller()
    return tree


# Trees whose owner reads events as they come (isod trace): their records are
# fetched every POLL_S. The daemon needs no polling: it settles the box (and
# so drains the hooks' queue) each time it cuts a test's record.
POLL_S = 0.02
_live: set[TreeNet] = set()
_poller: threading.Thread | None = None


def _start_poller() -> None:
    global _poller
    if _poller is None or not _poller.is_alive():
        _poller = threading.Thread(target=_poll, name="isod-net-poll", daemon=True)
        _poller.start()


def _poll() -> None:
    while True:
        time.sleep(POLL_S)
        with _trees_lock:
            live = [t for t in _live if _trees.get(t.box.pid) is t]
            _live.intersection_update(live)
        for tree in live:
            try:
                tree.flush()
            except OSError:
                pass


def _quiet(fn, *args) -> None:
    try:
        fn(*args)
    except OSError:
        pass


def _remove_cgroup(path: str) -> None:
    cgroupfs.remove_tree(path)


_probed: tuple[bool, str] | None = None


def probe() -> tuple[bool, str]:
    """(usable, why not): can this process load and attach the hooks here?
    Loads one guard and attaches it to a throwaway cgroup; cached."""
    global _probed
    if _probed is not None:
        return _probed
    if os.environ.get("ISOD_NO_NET_HOOKS", "") not in ("", "0"):
        _probed = (False, "cgroup socket hooks turned off (ISOD_NO_NET_HOOKS)")
        return _probed
    try:
        parent = own_v2_dir()
        if parent is None:
            raise OSError(errno.ENOENT, "no cgroup v2 hierarchy mounted")
        guard = NetGuard()
        path = os.path.join(parent, f"isod-{os.getpid()}-probe")
        try:
            os.mkdir(path, 0o755)
            try:
                guard.attach(path)
            finally:
                guard.close()
                _remove_cgroup(path)
        except OSError:
            guard.close()
            raise
        _probed = (True, "cgroup socket hooks (BPF)")
    except OSError as e:
        _probed = (False, f"cgroup socket hooks unavailable: {e.strerror or e}")
    return _probed
