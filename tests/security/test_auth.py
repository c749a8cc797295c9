"""Who may use a TCP daemon: the bearer token (`--token-file`, client env
ISOD_TOKEN) and TLS (`--tls-cert/--tls-key`, client `--isod-tls-ca`)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from harness.daemon import run_pytest
from isod.v1 import isod_pb2 as pb
from isod.v1 import isod_pb2_grpc as pb_grpc
from reliability.isod_rpc import FINISH, Serve, Stream, healthy, items, open_msg, write_tests

pytestmark = pytest.mark.large

TESTS = '''
import os, subprocess, pytest

@pytest.mark.medium
def test_runs_on_the_daemon():
    assert subprocess.run(["true"]).returncode == 0

@pytest.mark.small
def test_the_token_is_not_handed_to_tests():
    assert "ISOD_TOKEN" not in os.environ
'''


def token_file(directory, text: str | None = None, mode: int = 0o600) -> str:
    path = os.path.join(directory, "token")
    with open(path, "w") as f:
        f.write(text if text is not None else secrets.token_urlsafe(32))
    os.chmod(path, mode)
    return path


def serve_fails(*args: str) -> str:
    """`isod serve ARGS` must refuse to start; its message."""
    r = subprocess.run([sys.executable, "-m", "isod", "serve", *args], check=False, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0, r.stderr
    return r.stderr


def test_insecure_configurations_are_refused_at_startup(tmp_path):
    assert "listening on TCP needs --token-file" in serve_fails("--listen", "127.0.0.1:0")
    assert "must not be readable by group or others" in serve_fails(
        "--listen", "127.0.0.1:0", "--token-file", token_file(tmp_path, mode=0o644))
    assert "shorter than 16 bytes" in serve_fails("--listen", "127.0.0.1:0", "--token-file",
                                                  token_file(tmp_path, "short"))
    assert "cannot read --token-file" in serve_fails("--listen", "127.0.0.1:0", "--token-file", "/nonexistent")
    tok = token_file(tmp_path)
    assert "--tls-cert and --tls-key go together" in serve_fails("--listen", "127.0.0.1:0", "--token-file", tok,
                                                                "--tls-cert", tok)
    (tmp_path / "notpem").write_text("hello")
    os.chmod(tmp_path / "notpem", 0o600)
    notpem = str(tmp_path / "notpem")
    assert "is not a PEM file" in serve_fails("--listen", "127.0.0.1:0", "--token-file", tok,
                                              "--tls-cert", notpem, "--tls-key", notpem)


@pytest.fixture(scope="module")
def tcp(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    path = token_file(d)
    with open(path) as f:
        token = f.read()
    s = Serve("--listen", "127.0.0.1:0", "--token-file", path, workers=1)
    s.token = token
    yield s
    s.stop()


def test_wrong_or_missing_token_is_unauthenticated_and_logged(tcp, tmp_path):
    assert tcp.target.startswith("127.0.0.1:") and not tcp.target.endswith(":0")
    assert healthy(tcp.target)          # health checks need no token (probes, wait_healthy)
    with grpc.insecure_channel(tcp.target) as ch:
        stub = pb_grpc.IsodStub(ch)
        for metadata, how in ((None, "no"), ((("authorization", "Bearer wrong-token-xxxxxxxx"),), "wrong"),
                              ((("authorization", tcp.token),), "wrong")):   # the token without "Bearer "
            with pytest.raises(grpc.RpcError) as e:
                stub.Status(pb.StatusRequest(), metadata=metadata, timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in e.value.details()
            assert tcp.wait_log(f"unauthenticated call to /isod.v1.Isod/Status ({how} bearer token)")
        # reflection is not public either (it answers with the method's own shape: a stream)
        refl = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        with pytest.raises(grpc.RpcError) as e:
            list(refl)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = stub.Status(pb.StatusRequest(), metadata=(("authorization", f"Bearer {tcp.token}"),), timeout=5)
        assert ok.listen == tcp.target
    # a session without the token never starts a worker
    ids = write_tests(tmp_path, "test_s.py", 1)
    out = Stream(tcp.target).send(open_msg(tmp_path), items(ids), FINISH).collect(10)
    assert out.code == grpc.StatusCode.UNAUTHENTICATED and out.ready is None
    assert tcp.wait_log("unauthenticated call to /isod.v1.Isod/Session (no bearer token)")
    assert "session s" not in tcp.log_text().split("Session (no bearer token)")[-1]


def test_right_token_works_end_to_end(tcp, tmp_path):
    r = run_pytest(tmp_path, {"test_t.py": TESTS}, "-q", target=tcp.target, env={"ISOD_TOKEN": tcp.token})
    assert r.rc == 0, r.out
    assert "2 passed" in r.out
    # without it: a clear error naming the status, and no test ran
    r = run_pytest(tmp_path, {"test_t.py": TESTS}, "-q", target=tcp.target)
    assert r.rc != 0
    assert "UNAUTHENTICATED" in r.out and "bearer token" in r.out, r.out


# --- TLS ---------------------------------------------------------------------
def self_signed(directory) -> tuple[str, str]:
    """(cert, key) PEM files for CN=localhost, SAN localhost + 127.0.0.1, made now."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    if shutil.which("openssl"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=30)
    else:
        x509 = pytest.importorskip("cryptography.x509", reason="neither the openssl CLI nor `cryptography` is here")
        _make_with_cryptography(x509, cert, key)
    os.chmod(key, 0o600)
    return cert, key


def _make_with_cryptography(x509, cert_path: str, key_path: str) -> None:
    import datetime
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def test_tls_with_a_self_signed_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    other_cert, _ = self_signed(tmp_path / "other")
    tok = token_file(tmp_path)
    with open(tok) as f:
        token = f.read()
    s = Serve("--listen", "127.0.0.1:0", "--token-file", tok, "--tls-cert", cert, "--tls-key", key, workers=1)
    try:
        assert "(TLS) (bearer token required)" in s.log_text()
        with open(cert, "rb") as f:
            ca = f.read()
        with open(other_cert, "rb") as f:
            wrong_ca = f.read()
        assert healthy(s.target, ca=ca)
        assert not healthy(s.target, timeout=2)               # plain text to a TLS port: no answer
        assert not healthy(s.target, ca=wrong_ca, timeout=2)  # a certificate we do not trust
        proj = tmp_path / "proj"
        proj.mkdir()
        r = run_pytest(proj, {"test_t.py": TESTS}, "-q", f"--isod-tls-ca={cert}", target=s.target,
                       env={"ISOD_TOKEN": token})
        assert r.rc == 0, r.out
        assert "2 passed" in r.out
        r = run_pytest(proj, {"test_t.py": TESTS}, "-q", f"--isod-tls-ca={tmp_path}/missing.pem",
                       target=s.target, env={"ISOD_TOKEN": token})
        assert r.rc != 0 and "cannot read --isod-tls-ca" in r.out, r.out
    finally:
        s.stop()
