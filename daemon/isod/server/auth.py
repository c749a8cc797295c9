"""Bearer-token authentication for TCP listeners (a Unix socket relies on its 0700 directory)."""

from __future__ import annotations

import hmac
import os

import grpc


def read_token(path: str) -> bytes:
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            token = f.read().strip()
    except OSError as e:
        raise SystemExit(f"isod serve: cannot read --token-file {path}: {e.strerror}") from None
    if st.st_mode & 0o077:
        raise SystemExit(f"isod serve: --token-file {path} must not be readable by group or others (chmod 600)")
    if len(token) < 16:
        raise SystemExit(f"isod serve: the token in {path} is shorter than 16 bytes")
    return token


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without `authorization: Bearer <token>` (constant-time compare)."""

    def __init__(self, token: bytes, log) -> None:
        self._expected = b"Bearer " + token
        self._log = log

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        self._deny_unary = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(lambda it, ctx: deny(None, ctx))

    def intercept_service(self, continuation, details):
        got = dict(details.invocation_metadata).get("authorization", "")
        if hmac.compare_digest(got.encode(), self._expected):
            return continuation(details)
        self._log(f"unauthenticated call to {details.method}")
        return self._deny_stream if details.method.endswith("/Session") else self._deny_unary
