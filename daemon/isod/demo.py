"""`make demo`: the main job end to end on the embedded default.

1. `pytest -p isod_client` on docs/demo_suite (a private daemon is started and
   stopped for the run): the small tests that spawn fail with TC003 naming the
   command, although none of them goes through a patched `subprocess` call.
2. `isod trace --size small` on a ctypes libc.system() call: the process tree
   and the denied spawn.
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUITE = os.path.join(ROOT, "docs", "demo_suite")
EXPECTED = {"test_ctypes_system", "test_posix_spawn", "test_swallowed_error", "test_spawn_in_fixture"}

SNEAKY = "import ctypes; print('libc.system returned', ctypes.CDLL(None).system(b'id'))"


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def main() -> int:
    banner("pytest -p isod_client docs/demo_suite   (embedded daemon, enforcement strict)")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "isod_client", "-p", "no:cacheprovider",
                           "-rfE", SUITE], cwd=ROOT, capture_output=True, text=True)
    sys.stdout.write(proc.stdout + proc.stderr)
    caught = {name for name in EXPECTED if f"test_demo.py::{name} - [TC003]" in proc.stdout}

    banner("isod trace --size small -- python -c \"<ctypes libc.system(b'id')>\"")
    rc = subprocess.call([sys.executable, "-m", "isod", "trace", "--size", "small", "--", sys.executable, "-c", SNEAKY])
    print(f"(isod trace exit status {rc}: nonzero because a spawn was denied)")

    missing = EXPECTED - caught
    if missing or rc == 0 or "2 passed" not in proc.stdout:
        print(f"\ndemo FAILED: not caught: {sorted(missing)}", file=sys.stderr)
        return 1
    print(f"\ndemo ok: {len(caught)} spawning small tests failed with TC003; the clean small test "
          "and the medium test passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
