"""Whether seccomp user notification works here: the question both the
backend choice ("auto") and the ptrace backend's mode choice ask.

Its own module so that the ptrace backend can ask it without importing the
module that chooses (and imports) the backends.
"""

from __future__ import annotations

import errno
import os
import subprocess

from . import bpf
from .box import SandboxError
from .spawn import LauncherProcess

WHY_NOT_NOTIF = {
    errno.EBUSY: "nested in another user-notif sandbox, or in isod's ptrace backend",
    errno.EINVAL: "kernel without SECCOMP_FILTER_FLAG_NEW_LISTENER (before 5.0)",
    errno.ENOSYS: "kernel without seccomp",
    errno.EACCES: "the kernel refused the filter",
}


def probe_user_notif() -> tuple[bool, int, str]:
    """(ok, errno, text): can a child of this process install a user-notif filter?

    Runs the real launcher on `true` in notif mode (one short-lived process,
    ~20 ms): exactly what the seccomp backend would do, so the answer holds.
    """
    launch = LauncherProcess(["true"], "notif", bpf.program(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        fd = launch.receive_listener()
    except SandboxError as e:
        text = str(e)
        for code in WHY_NOT_NOTIF:
            if f": {os.strerror(code)} (" in text:
                return False, code, text
        return False, 0, text
    os.close(fd)   # the launcher's traps now fail with ENOSYS: `true` makes none
    launch.popen.wait()
    return True, 0, "ok"
