"""csi-ota certs: a local CA and the controller certificate, checked with real TLS on loopback."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from csi_ota import certs
from csi_ota.cli import main
from csi_ota.errors import CsiOtaError


def run_cli(*args: object) -> tuple[int, str, str]:
    """Run `csi-ota ARGS` in-process; returns (exit code, stdout, stderr with rich's wrapping undone)."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), " ".join(err.getvalue().decode().split())


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class TlsServer:
    """A one-connection-at-a-time TLS echo server on loopback using server.crt/server.key."""

    def __init__(self, cert: Path, key: Path, host: str) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(4)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for _ in range(8):  # bounded: tests make at most a few connections
            if self.stop.is_set():
                return
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(10)
                    tls.sendall(tls.recv(64))
            except (ssl.SSLError, OSError):
                continue  # a client that refused our certificate

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.sock.close()
        self.thread.join(timeout=10)


def tls_echo(host: str, port: int, ca: Path, server_hostname: str) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))  # trusts only our CA
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        tls.sendall(b"ping")
        return tls.recv(64)


@pytest.fixture()
def cert_dir(tmp_path: Path) -> Path:
    out = tmp_path / "certs"
    code, _, err = run_cli(
        "certs", "init", "--out", out, "--hostname", "ota-controller.local", "--hostname", "10.0.0.5"
    )
    assert code == 0, err
    return out


def test_init_writes_ca_and_server_files_with_private_keys_0600(cert_dir: Path) -> None:
    for name in ("ca.crt", "ca.key", "server.crt", "server.key"):
        assert (cert_dir / name).is_file()
    assert stat.S_IMODE((cert_dir / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((cert_dir / "server.key").stat().st_mode) == 0o600
    server = x509.load_pem_x509_certificate((cert_dir / "server.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((cert_dir / "ca.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "ota-controller.local"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1", "10.0.0.5"}
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert server.public_key().curve.name == "secp256r1"


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
def test_a_client_trusting_only_the_ca_accepts_the_controller(cert_dir: Path, server_hostname: str) -> None:
    server = TlsServer(cert_dir / "server.crt", cert_dir / "server.key", "127.0.0.1")
    try:
        assert tls_echo("127.0.0.1", server.port, cert_dir / "ca.crt", server_hostname) == b"ping"
    finally:
        server.close()


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback here")
def test_ipv6_loopback_name_is_in_the_certificate(cert_dir: Path) -> None:
    server = TlsServer(cert_dir / "server.crt", cert_dir / "server.key", "::1")
    try:
        assert tls_echo("::1", server.port, cert_dir / "ca.crt", "::1") == b"ping"
    finally:
        server.close()


def test_a_client_trusting_another_ca_or_asking_another_name_refuses(cert_dir: Path, tmp_path: Path) -> None:
    other_ca = certs.create_ca(tmp_path / "other").cert
    server = TlsServer(cert_dir / "server.crt", cert_dir / "server.key", "127.0.0.1")
    try:
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
            tls_echo("127.0.0.1", server.port, other_ca, "localhost")
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            tls_echo("127.0.0.1", server.port, cert_dir / "ca.crt", "evil.example")
    finally:
        server.close()


def test_rerun_keeps_the_ca_devices_trust_and_reissues_the_server_cert(cert_dir: Path) -> None:
    ca_before = (cert_dir / "ca.crt").read_bytes()
    server_before = (cert_dir / "server.crt").read_bytes()
    code, out, err = run_cli("certs", "init", "--out", cert_dir, "--hostname", "new-name.lan", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ca_created"] is False
    assert "new-name.lan" in report["server"]["subject_alt_names"]
    assert (cert_dir / "ca.crt").read_bytes() == ca_before
    assert (cert_dir / "server.crt").read_bytes() != server_before


def test_bad_hostname_is_rejected_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    code, _, err = run_cli("certs", "init", "--out", out, "--hostname", "bad_name!")
    assert code == 2
    assert "neither an IP address nor a valid DNS name" in err
    assert not out.exists() or not any(out.iterdir())


def test_library_create_ca_refuses_to_replace_a_ca(tmp_path: Path) -> None:
    certs.create_ca(tmp_path)
    code_before = (tmp_path / "ca.key").read_bytes()
    with pytest.raises(CsiOtaError, match="already holds a CA"):
        certs.create_ca(tmp_path)
    assert (tmp_path / "ca.key").read_bytes() == code_before
