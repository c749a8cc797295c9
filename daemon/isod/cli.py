"""The `isod` command line: `isod trace`, `isod serve`, `isod status`, `isod suggest`."""

from __future__ import annotations

import argparse
import os
import sys

from .contract import Size
from .sandbox.backends import BACKEND_CHOICES

SIZES = [s.value for s in Size]


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, `isod serve: MESSAGE`, exit status 2
    (plain argparse prints the whole usage first). Subcommands inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message}\n")


def _nonempty(value: str) -> str:
    """An argparse type for a path or address: an empty one would silently mean the default."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _number(kind, what: str):
    """An argparse type for int or float that names the option's meaning when
    the text is not a number (range checks are the command's)."""
    def check(value: str):
        try:
            return kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}") from None
    check.__name__ = what
    return check


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="isod", description="Kernel-enforced test sizes for pytest.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("trace", help="run a command in the sandbox and show the process tree it makes",
                       description="Run CMD in the sandbox; print each fork, exec and exit with times "
                                   "relative to start. Exits with CMD's status (nonzero if anything was denied).")
    t.add_argument("--size", choices=SIZES, help="apply this test size's rule (small denies every spawn)")
    t.add_argument("--json", action="store_true", help="one JSON object per event")
    t.add_argument("-o", "--output", metavar="FILE", type=_nonempty,
                   help="write the trace here instead of stderr")
    t.add_argument("--backend", default=os.environ.get("ISOD_BACKEND", "seccomp"), choices=BACKEND_CHOICES,
                   help="sandbox backend (env ISOD_BACKEND)")
    t.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    t.set_defaults(parser=t)

    s = sub.add_parser("serve", help="run the gRPC daemon",
                       description="Serve sessions of `pytest -p isod_client` on a Unix socket (default) or TCP.")
    s.add_argument("--listen", metavar="ADDR", type=_nonempty,
                   help="unix:///ABS/PATH or HOST:PORT (TCP needs --token-file); "
                        "default: a Unix socket in a 0700 runtime directory")
    s.add_argument("--workers", type=_number(int, "a whole number"), metavar="N",
                   help="workers per session, 1-256 (default: CPU count)")
    s.add_argument("--backend", default=os.environ.get("ISOD_BACKEND", "seccomp"), choices=BACKEND_CHOICES,
                   help="sandbox backend (env ISOD_BACKEND)")
    s.add_argument("--token-file", metavar="FILE", type=_nonempty,
                   help="bearer token clients must present (required for TCP)")
    s.add_argument("--tls-cert", metavar="FILE", type=_nonempty,
                   help="serve TLS with this PEM certificate (chain); needs --tls-key")
    s.add_argument("--tls-key", metavar="FILE", type=_nonempty, help="the PEM private key of --tls-cert (mode 0600)")
    s.add_argument("--grace", type=_number(float, "a number of seconds"), default=10.0, metavar="SECONDS",
                   help="seconds running tests get on SIGTERM (default 10)")
    s.add_argument("--limits", metavar="SPEC", default="",
                   help="per-size limits on a worker's tree, e.g. medium.pids=256,large.memory=8G,small.memory=off "
                        "(defaults: pids 512 for medium and up, memory 2G small, 4G medium, 8G large/xlarge)")
    s.add_argument("--warm-zygotes", type=_number(int, "a whole number"), default=4, metavar="N",
                   help="collected zygotes kept for the next runs of the same suite, 0-64 (default 4; 0: none)")
    s.add_argument("--prestart", metavar="FILE", type=_nonempty, help=argparse.SUPPRESS)
    s.add_argument("--exit-with-parent", type=_number(int, "a process id"), metavar="PID", help=argparse.SUPPRESS)
    s.set_defaults(parser=s)

    st = sub.add_parser("status", help="ask a daemon for its status")
    st.add_argument("--target", default=os.environ.get("ISOD_TARGET"), help="daemon address (env ISOD_TARGET)")
    st.set_defaults(parser=st)

    g = sub.add_parser("suggest", help="suggest test sizes from a saved --isod-report; --apply marks the tests",
                       description="Print, per size, which tests could be smaller and which are too small, from "
                                   "a report of `pytest -p isod_client --isod-report FILE`. With --apply, add the "
                                   "suggested size marker to each unmarked plain test function (needs libcst: "
                                   "pip install 'isod[suggest]').")
    g.add_argument("report", metavar="REPORT.json", type=_nonempty)
    g.add_argument("--apply", action="store_true", help="write the markers into the tests' source")
    g.add_argument("--root", metavar="DIR", type=_nonempty,
                   help="directory the node ids are relative to (default: the report's rootdir)")
    g.set_defaults(parser=g)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = args.parser          # the subcommand's parser, for its one-line errors
    backend = getattr(args, "backend", None)
    if backend is not None and backend not in BACKEND_CHOICES:   # ISOD_BACKEND: argparse checks only typed values
        sub.error(f"ISOD_BACKEND={backend!r}: unknown backend (choose from {', '.join(BACKEND_CHOICES)})")
    if args.command == "trace":
        return _trace(args, sub)
    if args.command == "serve":
        from .server.app import UsageError, serve
        try:
            return serve(args.listen, args.workers, args.backend, args.token_file, args.exit_with_parent, args.grace,
                         args.tls_cert, args.tls_key, args.limits, args.warm_zygotes, args.prestart)
        except UsageError as e:
            sub.error(str(e))
    if args.command == "status":
        return _status(args, sub)
    if args.command == "suggest":
        return _suggest(args, sub)
    return 2


def _suggest(args, parser: argparse.ArgumentParser) -> int:
    from .suggest import ReportError, applied_lines, apply, load_report, summary

    try:
        report = load_report(args.report)
    except ReportError as e:
        parser.error(str(e))
    root = args.root or report.get("rootdir") or os.getcwd()
    if args.apply:
        if not os.path.isdir(root):
            parser.error(f"--root {root}: not a directory" if args.root
                         else f"the report's rootdir {root} is not a directory (give --root DIR)")
        try:
            import libcst  # noqa: F401
        except ImportError:
            parser.error("--apply needs libcst: pip install 'isod[suggest]'")
    for line in summary(report):
        print(line)
    if args.apply:
        for line in applied_lines(apply(report, root)):
            print(line)
    return 0


def _status(args, parser: argparse.ArgumentParser) -> int:
    import grpc
    from google.protobuf import json_format

    from .server.app import UsageError, address_problem, default_listen
    from .v1 import isod_pb2 as pb
    from .v1 import isod_pb2_grpc as pb_grpc

    if args.target and (problem := address_problem(args.target)):
        parser.error(f"--target: {problem}" if args.target != os.environ.get("ISOD_TARGET")
                     else f"ISOD_TARGET: {problem}")
    try:
        target = args.target or default_listen()
    except UsageError as e:
        parser.error(str(e))
    with grpc.insecure_channel(target) as ch:
        try:
            reply = pb_grpc.IsodStub(ch).Status(pb.StatusRequest(), timeout=5)
        except grpc.RpcError as e:
            print(f"isod status: {target}: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(reply, preserving_proto_field_name=True))
    return 0


def _trace(args, parser: argparse.ArgumentParser) -> int:
    from .sandbox import SandboxError
    from .trace import run

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no command given (usage: isod trace [--size SIZE] -- CMD [ARGS...])")
    try:
        out = open(args.output, "w") if args.output else sys.stderr
    except OSError as e:
        parser.error(f"-o {args.output}: {e.strerror}")
    try:
        return run(cmd, args.size, args.json, out, args.backend)
    except SandboxError as e:
        print(f"isod trace: {e}", file=sys.stderr)
        return 125
    finally:
        if args.output:
            out.close()
