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

    s = sub.add_parser("serve", help="run the gRPC daemon",
                       description="Serve sessions of `pytest -p isod_client` on a Unix socket (default) or TCP.")
    s.add_argument("--listen", metavar="ADDR", help="unix:///ABS/PATH or HOST:PORT (TCP needs --token-file); "
                   "default: a Unix socket in a 0700 runtime directory")
    s.add_argument("--workers", type=int, metavar="N", help="workers per session (default: CPU count)")
    s.add_argument("--backend", default=os.environ.get("ISOD_BACKEND", "seccomp"), choices=BACKEND_CHOICES,
                   help="sandbox backend (env ISOD_BACKEND)")
    s.add_argument("--token-file", metavar="FILE", help="bearer token clients must present (required for TCP)")
    s.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this PEM certificate (chain); needs --tls-key")
    s.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert (mode 0600)")
    s.add_argument("--grace", type=float, default=10.0, help="seconds running tests get on SIGTERM")
    s.add_argument("--limits", metavar="SPEC", default="",
                   help="per-size limits on a worker's tree, e.g. medium.pids=256,large.memory=8G,small.memory=off "
                        "(defaults: pids 512 for medium and up, memory 2G small, 4G medium, 8G large/xlarge)")
    s.add_argument("--exit-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)

    st = sub.add_parser("status", help="ask a daemon for its status")
    st.add_argument("--target", default=os.environ.get("ISOD_TARGET"), help="daemon address (env ISOD_TARGET)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "trace":
        return _trace(args)
    if args.command == "serve":
        from .server.app import serve
        return serve(args.listen, args.workers, args.backend, args.token_file, args.exit_with_parent, args.grace,
                     args.tls_cert, args.tls_key, args.limits)
    if args.command == "status":
        return _status(args)
    return 2


def _status(args) -> int:
    import grpc
    from google.protobuf import json_format

    from .server.app import default_listen
    from .v1 import isod_pb2 as pb
    from .v1 import isod_pb2_grpc as pb_grpc

    target = args.target or default_listen()
    with grpc.insecure_channel(target) as ch:
        try:
            reply = pb_grpc.IsodStub(ch).Status(pb.StatusRequest(), timeout=5)
        except grpc.RpcError as e:
            print(f"isod status: {target}: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(reply, preserving_proto_field_name=True))
    return 0


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
