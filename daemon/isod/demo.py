"""`make demo`: the main job end to end on the embedded default.

Runs a small example test suite through `pytest -p isod_client` (embedded
daemon) when the plugin is available, and shows `isod trace` catching a spawn
that monkeypatching plugins miss.
"""

from __future__ import annotations

import subprocess
import sys

SNEAKY = (
    "import ctypes\n"
    "libc = ctypes.CDLL(None)\n"
    "rc = libc.system(b'echo this should never run')  # no subprocess module involved\n"
    "print('libc.system returned', rc)\n"
)


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def main() -> int:
    banner("isod trace --size small -- python -c '<ctypes libc.system(...)>'")
    rc = subprocess.call([sys.executable, "-m", "isod", "trace", "--size", "small", "--",
                          sys.executable, "-c", SNEAKY])
    print(f"(exit status {rc}: nonzero because a spawn was denied)")
    if rc == 0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
