"""Choosing a sandbox backend by name, or probing for the best one ("auto")."""

from __future__ import annotations

import errno
import os
import subprocess

from .box import SandboxError

BACKENDS = ("seccomp", "ptrace")                # concrete backends (tests run each)
BACKEND_CHOICES = ("auto", "seccomp", "ptrace")  # what --backend accepts (env ISOD_BACKEND)

_WHY_NOT_NOTIF = {
    errno.EBUSY: "nested in another user-notif sandbox, or in isod's ptrace backend",
    errno.EINVAL: "kernel without SECCOMP_FILTER_FLAG_NEW_LISTENER (before 5.0)",
    errno.ENOSYS: "kernel without seccomp",
    errno.EACCES: "the kernel refused the filter",
}


def open_backend(name: str = "seccomp"):
    """A started backend; close() it when done. Its ``reason`` says why it runs."""
    if name == "seccomp":
        from .seccomp_backend import SeccompBackend
        b = SeccompBackend()
        b.reason = "seccomp user notification"
        return b
    if name == "ptrace":
        from .ptrace_backend import PtraceBackend
        return PtraceBackend()
    if name == "auto":
        return _auto()
    raise SandboxError(f"unknown sandbox backend {name!r} (known: {', '.join(BACKEND_CHOICES)})")


def _auto():
    ok, code, text = probe_user_notif()
    if ok:
        from .seccomp_backend import SeccompBackend
        b = SeccompBackend()
        b.reason = "seccomp user notification available"
        return b
    from .ptrace_backend import PtraceBackend
    why = f"user notification unavailable: {errno.errorcode.get(code, text)}"
    if code in _WHY_NOT_NOTIF:
        why += f" ({_WHY_NOT_NOTIF[code]})"
    # under another user-notif filter (EBUSY) its answers would outrank RET_TRACE
    seccomp = {errno.EBUSY: False, errno.ENOSYS: False, errno.EACCES: False, errno.EINVAL: True}.get(code)
    try:
        b = PtraceBackend(seccomp=seccomp)
    except SandboxError as e:
        raise SandboxError(f"no usable sandbox backend: {why}; and {e}") from e
    b.reason = f"{why}; {b.reason}"
    return b


def probe_user_notif() -> tuple[bool, int, str]:
    """(ok, errno, text): can a child of this process install a user-notif filter?

    Runs the real launcher on `true` in notif mode (one short-lived process,
    ~20 ms): exactly what the seccomp backend would do, so the answer holds.
    """
    from . import bpf
    from .spawn import LauncherProcess

    launch = LauncherProcess(["true"], "notif", bpf.program(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        fd = launch.receive_listener()
    except SandboxError as e:
        text = str(e)
        for code in _WHY_NOT_NOTIF:
            if f": {os.strerror(code)} (" in text:
                return False, code, text
        return False, 0, text
    os.close(fd)   # the launcher's traps now fail with ENOSYS: `true` makes none
    launch.popen.wait()
    return True, 0, "ok"
