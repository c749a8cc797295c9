"""The pieces both backends share: the syscall-argument decoder (on this
process's own memory: process_vm_readv reads it as it reads a caller's), the
/proc ids of a thread, the ABI tables, and the filter builder's extra rules."""

from __future__ import annotations

import ctypes
import os
import struct
import threading

import pytest
from isod.policy import SYS_SOCKET
from isod.sandbox import bpf, procfs
from isod.sandbox.remote_memory import MAX_ARG_LEN, MemReader
from isod.sandbox.syscall_args import NO_NET, clone3_flags, decode
from isod.sandbox.syscalls import ABI_OF_ARCH, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, NAME_OF, NR_SECCOMP, SYSCALLS

pytestmark = pytest.mark.small

X86_64 = AUDIT_ARCH_X86_64


class Strings:
    """C strings and a NULL-terminated char*[] of them, kept alive in this process."""

    def __init__(self, *items: bytes) -> None:
        self.bufs = [ctypes.create_string_buffer(s) for s in items]
        self.array = (ctypes.c_void_p * (len(items) + 1))(*[ctypes.addressof(b) for b in self.bufs], None)

    def at(self, i: int) -> int:
        return ctypes.addressof(self.bufs[i])

    @property
    def argv(self) -> int:
        return ctypes.addressof(self.array)


def test_execve_is_decoded_from_memory():
    s = Strings(b"/bin/echo", b"echo", b"hello world")
    argv = Strings(b"echo", b"hello world")
    got = decode(MemReader(), os.getpid(), "execve", X86_64, (s.at(0), argv.argv, 0, 0, 0, 0))
    assert got == ("/bin/echo", ["echo", "hello world"], os.getcwd(), 0, NO_NET, False)


def test_execveat_takes_its_path_argv_and_flags_one_register_later():
    s = Strings(b"prog")
    argv = Strings(b"prog", b"-x")
    path, args, _cwd, flags, net, cut = decode(MemReader(), os.getpid(), "execveat", X86_64,
                                               (-100, s.at(0), argv.argv, 0, 0x1000, 0))
    assert (path, args, flags, net, cut) == ("prog", ["prog", "-x"], 0x1000, NO_NET, False)


def test_a_long_argument_is_cut():
    argv = Strings(b"x" * (MAX_ARG_LEN + 10))
    path, args, _cwd, _flags, _net, cut = decode(MemReader(), os.getpid(), "execve", X86_64,
                                                 (argv.at(0), argv.argv, 0, 0, 0, 0))
    assert cut and len(path) == MAX_ARG_LEN and args == ["x" * MAX_ARG_LEN]


def test_clone3_flags_come_from_its_clone_args():
    args = ctypes.create_string_buffer(struct.pack("=QQ", 0x10000 | 0x100, 17), 16)
    mem = MemReader()
    assert decode(mem, os.getpid(), "clone3", X86_64, (ctypes.addressof(args), 88, 0, 0, 0, 0))[3] == 0x10100
    assert clone3_flags(mem, os.getpid(), ctypes.addressof(args)) == 0x10100
    assert clone3_flags(mem, os.getpid(), 0) == 0              # no clone_args: nothing to read


def test_register_arguments():
    mem = MemReader()
    assert decode(mem, os.getpid(), "clone", X86_64, (0x11, 0, 0, 0, 0, 0))[3] == 0x11
    assert decode(mem, os.getpid(), "ptrace", X86_64, (16, 0, 0, 0, 0, 0))[3] == 16       # the request
    assert decode(mem, os.getpid(), "fork", X86_64, (5, 6, 7, 0, 0, 0)) == ("", [], "", 0, NO_NET, False)
    assert decode(mem, os.getpid(), None, X86_64, (5, 6, 7, 0, 0, 0)) == ("", [], "", 0, NO_NET, False)
    # socket(): ints, so the upper halves of the registers do not count
    assert decode(mem, os.getpid(), "socket", X86_64, (0x1_0000_0002, 1, 6, 0, 0, 0))[4] == (2, 1, 6)


def test_socketcall_reads_socket_arguments_from_memory_only():
    mem = MemReader()
    args = ctypes.create_string_buffer(struct.pack("=III", 10, 2, 17), 12)
    got = decode(mem, os.getpid(), "socketcall", AUDIT_ARCH_I386, (SYS_SOCKET, ctypes.addressof(args), 0, 0, 0, 0))
    assert got[3:5] == (SYS_SOCKET, (10, 2, 17))
    connect = SYS_SOCKET + 2
    assert decode(mem, os.getpid(), "socketcall", AUDIT_ARCH_I386, (connect, ctypes.addressof(args), 0, 0, 0, 0))[3:5] \
        == (connect, NO_NET)


def test_ids_of_this_process_a_thread_of_it_and_a_tid_that_is_gone():
    assert procfs.ids(os.getpid()) == (os.getpid(), os.getppid())
    got = []
    t = threading.Thread(target=lambda: got.append((threading.get_native_id(), procfs.ids(threading.get_native_id()))))
    t.start()
    t.join()
    tid, ids = got[0]
    assert tid != os.getpid() and ids == (os.getpid(), os.getppid())
    with open("/proc/sys/kernel/pid_max") as f:
        gone = int(f.read()) + 1
    assert procfs.ids(gone) == (gone, 0)


def test_the_abi_tables_agree():
    for (arch, nr), name in NAME_OF.items():
        assert SYSCALLS[ABI_OF_ARCH[arch]][name] == nr
    assert not NR_SECCOMP.items() & NAME_OF.keys()        # seccomp(2) is answered apart


def test_extra_rules_are_added_to_the_cached_program():
    plain = bpf.program(0x7FF00000)
    extra = bpf.program(0x7FF00000, True, (("seccomp", 1, 8, 8),))
    assert extra != plain and len(extra) > len(plain) and len(extra) % 8 == 0
    assert bpf.program(0x7FF00000, True, (("seccomp", 1, 8, 8),)) is extra
