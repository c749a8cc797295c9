"""Who may talk to the daemon: a bearer token for TCP listeners (a Unix socket
relies on its 0700 directory), and optional TLS so the token and the test
traffic do not cross the network in clear text.

TLS here is server authentication and encryption only; clients authenticate
with the token. A token on plain TCP is readable by anyone on the path: use
``--tls-cert/--tls-key`` for anything beyond loopback.
"""

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


def tls_credentials(cert_path: str | None, key_path: str | None) -> grpc.ServerCredentials | None:
    """Server credentials from PEM files, or None when TLS is not asked for."""
    if not cert_path and not key_path:
        return None
    if not (cert_path and key_path):
        raise SystemExit("isod serve: --tls-cert and --tls-key go together (give both or neither)")
    pem = {}
    for flag, path in (("--tls-cert", cert_path), ("--tls-key", key_path)):
        try:
            with open(path, "rb") as f:
                pem[flag] = f.read()
        except OSError as e:
            raise SystemExit(f"isod serve: cannot read {flag} {path}: {e.strerror}") from None
        if b"-----BEGIN " not in pem[flag]:
            raise SystemExit(f"isod serve: {flag} {path} is not a PEM file")
    if os.stat(key_path).st_mode & 0o077:
        raise SystemExit(f"isod serve: --tls-key {key_path} must not be readable by group or others (chmod 600)")
    return grpc.ssl_server_credentials([(pem["--tls-key"], pem["--tls-cert"])])


# Health checks stay open: probes and `wait_healthy` carry no token, and the
# answer (SERVING or not) tells nothing a port scan would not.
PUBLIC_PREFIX = "/grpc.health.v1.Health/"


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without `authorization: Bearer <token>` (constant-time compare),
    except health checks. Every rejection is logged with the method and whether a
    token was sent at all.
    """

    def __init__(self, token: bytes, log) -> None:
        self._expected = b"Bearer " + token
        self._log = log

        def deny(_request_or_iterator, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token "
                          "(set ISOD_TOKEN to the contents of the daemon's --token-file)")

        # one per streaming shape: the deny handler must match the method's
        self._deny = {
            (False, False): grpc.unary_unary_rpc_method_handler(deny),
            (False, True): grpc.unary_stream_rpc_method_handler(deny),
            (True, False): grpc.stream_unary_rpc_method_handler(deny),
            (True, True): grpc.stream_stream_rpc_method_handler(deny),
        }

    def intercept_service(self, continuation, details):
        if details.method.startswith(PUBLIC_PREFIX):
            return continuation(details)
        got = dict(details.invocation_metadata).get("authorization", "")
        if hmac.compare_digest(got.encode(), self._expected):
            return continuation(details)
        self._log(f"unauthenticated call to {details.method} ({'wrong' if got else 'no'} bearer token)")
        handler = continuation(details)   # only looked up, never called: gives the method's shape
        if handler is None:
            return None                   # unknown method: UNIMPLEMENTED, as with a token
        return self._deny[(bool(handler.request_streaming), bool(handler.response_streaming))]
