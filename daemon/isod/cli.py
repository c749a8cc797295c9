"""The `isod` command line: `isod trace`, `isod serve`, `isod status`."""

from __future__ import annotations

import argparse
import os
import sys

from .policy import Size
from .sandbox.backends import BACKEND_CHOICES

SIZES = [s.value for s in Size]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="isod", description="Kernel-enforced test sizes for pytest.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("trace", help="run a command in the sandbox and show the process tree it makes",
                       description="Run CMD in the sandbox; print each fork, exec and exit with times "
                                   "relative to start. Exits with CMD's status (nonzero if anything was denied).")
    t.add_argument("--size", choices=SIZES, help="apply this test size's rule (small denies every spawn)")
    t.add_argument("--json", action="store_true", help="one JSON object per event")
    t.add_argument("-o", "--output", metavar="FILE", help="write the trace here instead of stderr")
    t.add_argument("--backend", default=os.environ.get("ISOD_BACKEND", "seccomp"), choices=BACKEND_CHOICES,
                   help="sandbox backend (env ISOD_BACKEND)")
    t.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "trace":
        return _trace(args)
    return 2


def _trace(args) -> int:
    from .sandbox import SandboxError
    from .trace import run

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("isod trace: no command given (usage: isod trace [--size SIZE] -- CMD [ARGS...])", file=sys.stderr)
        return 2
    out = open(args.output, "w") if args.output else sys.stderr
    try:
        return run(cmd, args.size, args.json, out, args.backend)
    except SandboxError as e:
        print(f"isod trace: {e}", file=sys.stderr)
        return 125
    finally:
        if args.output:
            out.close()
