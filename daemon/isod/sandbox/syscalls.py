"""The syscall ABI tables: numbers and names per architecture, and the flags
the trap set and the backends look at.

Plain data, no ctypes: the filter builder, both backends and the launcher
read them, and a trapped call is named by one dict lookup on (arch, nr). The
numbers the filter traps are listed in docs/kernel-notes.md (trap set).
"""

from __future__ import annotations

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
ABI_OF_ARCH = {AUDIT_ARCH_X86_64: "x86_64", AUDIT_ARCH_I386: "i386"}

# name -> number, per ABI. Only what the filter traps or the policy names.
SYSCALLS = {
    "x86_64": {
        "fork": 57, "vfork": 58, "execve": 59, "clone": 56, "execveat": 322,
        "clone3": 435, "ptrace": 101, "io_uring_setup": 425, "socket": 41,
    },
    "i386": {
        "fork": 2, "vfork": 190, "execve": 11, "clone": 120, "execveat": 358,
        "clone3": 435, "ptrace": 26, "io_uring_setup": 425, "socket": 359,
        "socketcall": 102,   # the multiplexer: its arguments are in memory
    },
}
# (arch, nr) -> syscall name, the backends' lookup table
NAME_OF = {
    (arch, nr): name
    for arch, abi in ABI_OF_ARCH.items()
    for name, nr in SYSCALLS[abi].items()
}
# seccomp(2) itself, per arch: not in NAME_OF (only the ptrace backend's
# filter traps it, and answers it apart from the trap set)
NR_SECCOMP = {AUDIT_ARCH_X86_64: 317, AUDIT_ARCH_I386: 354}

CLONE_THREAD = 0x00010000
CLONE_UNTRACED = 0x00800000
