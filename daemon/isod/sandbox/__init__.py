"""The sandbox: run a command so that every process creation is trapped,
decided by a policy rule and recorded.

The narrow interface is ``open_backend(name) -> backend`` with
``backend.spawn(argv, rule=..., on_event=..., **popen_kwargs) -> Box`` and
``backend.close()``; seccomp user notification and ptrace are two backends of it.

Names are loaded lazily: the launcher imports ``isod.sandbox.launcher`` in a
bare interpreter right before it execs the target, and must not pay for more.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Box": ".box", "SandboxError": ".box", "Event": ".events", "ProcEvent": ".events",
    "open_backend": ".backends",
}
__all__ = ["Box", "Event", "ProcEvent", "SandboxError", "open_backend"]  # noqa: F822 (lazy)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)
