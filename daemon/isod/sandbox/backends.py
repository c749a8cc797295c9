"""Choosing a sandbox backend by name, or probing for the best one ("auto").

A backend's module is imported when it is opened: the command line imports
this one for BACKEND_CHOICES alone and must not pay for libseccomp or ptrace.
"""

from __future__ import annotations

import errno

from .box import SandboxError

BACKENDS = ("seccomp", "ptrace")                # concrete backends (tests run each)
BACKEND_CHOICES = ("auto", "seccomp", "ptrace")  # what --backend accepts (env ISOD_BACKEND)


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
    from .notif_probe import WHY_NOT_NOTIF, probe_user_notif
    ok, code, text = probe_user_notif()
    if ok:
        from .seccomp_backend import SeccompBackend
        b = SeccompBackend()
        b.reason = "seccomp user notification available"
        return b
    from .ptrace_backend import PtraceBackend
    why = f"user notification unavailable: {errno.errorcode.get(code, text)}"
    if code in WHY_NOT_NOTIF:
        why += f" ({WHY_NOT_NOTIF[code]})"
    # under another user-notif filter (EBUSY) its answers would outrank RET_TRACE
    seccomp = {errno.EBUSY: False, errno.ENOSYS: False, errno.EACCES: False, errno.EINVAL: True}.get(code)
    try:
        b = PtraceBackend(seccomp=seccomp)
    except SandboxError as e:
        raise SandboxError(f"no usable sandbox backend: {why}; and {e}") from e
    b.reason = f"{why}; {b.reason}"
    return b

