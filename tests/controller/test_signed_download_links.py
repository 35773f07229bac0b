"""Signed download links (issue 14): nginx checks them and sends the image with no Python per download.

A real `csi-ota serve --signed-download-links` behind Debian's nginx configured by
csi_ota.controller.download_links.nginx_config. While nginx serves links the controller is
stopped (SIGSTOP): whatever nginx answered, it answered alone. Expired links and requests
without a link fall through to the controller, which decides by the device token as before.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from controller_helpers import new_device, upload
from test_hot_path import _device_row, _metric

from csi_ota.cli import main as cli_main
from csi_ota.controller import download_links
from csi_ota.errors import CsiOtaError

CAP = 2  # concurrent link downloads per device in the test's nginx
WAIT_BOUND_S = 10.0


def _link_parts(link: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(link)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def _with(link: str, **changes: str) -> str:
    path, query = _link_parts(link)
    query.update(changes)
    return path + "?" + "&".join(f"{k}={v}" for k, v in query.items())


def _stalled_download(port: int, link: str) -> socket.socket:
    """A download that stays in flight: a tiny receive window that is never read past the headers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(WAIT_BOUND_S)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {link} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert sock.recv(64).startswith(b"HTTP/1.1 200")
    return sock


@contextlib.contextmanager
def _stopped(pid: int):
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_signed_links_are_served_by_nginx_alone(tmp_path, make_release, release_public_key):
    from services import controller_server, nginx_server

    secret_file = tmp_path / "link.secret"
    assert cli_main(["download-links", "new-secret", str(secret_file)]) == 0
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    secret = download_links.load_secret(secret_file)
    release = make_release(target_size_bytes=1_200_000)  # more than the sockets below can buffer
    args = ["--workers", "1", "--signed-download-links", str(secret_file)]
    with controller_server(tmp_path / "data", trusted_keys=[release_public_key], extra_args=args) as server:
        assert upload(server, release).status_code == 201
        devices = [new_device(server) for _ in range(2)]
        links = {}
        with server.management_client() as mgmt:
            for device_id, _ in devices:
                assignment = {"release": release.version}
                assert mgmt.put(f"/api/devices/{device_id}/assignment", json=assignment).status_code == 200
        for device_id, token in devices:
            with server.device_client(token) as device:
                offer = device.get("/api/ota/version", params={"device_id": device_id})
            assert offer.status_code == 200
            links[device_id] = offer.headers["x-firmware-url"]
        (a, token_a), (b, _) = devices
        path, query = _link_parts(links[a])
        assert path == f"/api/ota/firmware/{release.sha256}" and query["device"] == a
        assert 7000 <= int(query["expires"]) - time.time() <= 7200  # the default lifetime, 2 h
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", query["sig"])
        # The version check that handed out the manifest took the offer: nothing else has to.
        row = _device_row(server.database_url, a)
        assert row.offer_taken_at is not None and row.offer_release_id is not None

        port = server.device_url.rsplit(":", 1)[1]
        http_config, server_config = download_links.nginx_config(
            secret, server.firmware_dir, f"127.0.0.1:{port}", downloads_per_device=CAP
        )
        (tmp_path / "root").mkdir()
        with nginx_server(
            tmp_path / "root",
            extra_http_config=http_config,
            extra_server_config=server_config,
            listen_options="sndbuf=32k",  # a slow network: a download stays in flight until read
        ) as nginx:
            with (
                _stopped(server.process.pid),
                httpx.Client(base_url=nginx.base_url, timeout=WAIT_BOUND_S) as c,
            ):
                full = c.get(links[a])  # no token: the link is the credential
                partial = c.get(links[a], headers={"Range": "bytes=500-"})
                refused = {
                    "tampered": c.get(_with(links[a], sig="A" + query["sig"][1:])).status_code,
                    "another device's": c.get(_with(links[a], device=b)).status_code,
                    "another image": c.get(links[a].replace(release.sha256, "0" * 64)).status_code,
                    "later expiry": c.get(
                        _with(links[a], expires=str(int(query["expires"]) + 1))
                    ).status_code,
                    "no expiry": c.get(links[a].replace("expires=", "x=")).status_code,
                }
                stalled = [_stalled_download(nginx.port, links[a]) for _ in range(CAP)]
                try:
                    over_cap = c.get(links[a]).status_code
                    other_device = c.get(links[b])  # b has its own slots
                finally:
                    for sock in stalled:
                        sock.close()
                deadline = time.monotonic() + WAIT_BOUND_S
                while (again := c.get(links[a]).status_code) == 429 and time.monotonic() < deadline:
                    time.sleep(0.1)
            assert full.status_code == 200 and full.content == release.image
            assert full.headers["etag"] == f'"{release.sha256}"'
            assert partial.status_code == 206 and partial.content == release.image[500:]
            assert (
                partial.headers["content-range"] == f"bytes 500-{len(release.image) - 1}/{len(release.image)}"
            )
            assert refused == dict.fromkeys(refused, 403)
            assert over_cap == 429 and other_device.content == release.image and again == 200

            # Expired links and requests without one go to the controller: the token decides there.
            expired = download_links.signed_url(release.sha256, a, secret, -10)
            with httpx.Client(base_url=nginx.base_url, timeout=30) as c:
                assert c.get(expired).status_code == 401
                assert c.get(f"/api/ota/firmware/{release.sha256}").status_code == 401
                bearer = {"Authorization": f"Bearer {token_a}"}
                assert c.get(expired, headers=bearer).content == release.image
                assert c.get(f"/api/ota/firmware/{release.sha256}", headers=bearer).content == release.image
        text = httpx.get(f"{server.management_url}/metrics").text
        # The controller sent exactly the two fall-through images; every link download was nginx's.
        assert _metric(text, 'csi_ota_firmware_downloads_total\\{status="started"\\}') == 2
        assert _metric(text, "csi_ota_firmware_bytes_served_total") == 2 * len(release.image)


def test_signature_is_what_nginx_computes():
    """The documented formula (base64url MD5 of expires|uri|device|secret), against a fixed vector."""
    secret = "s" * 32
    link = download_links.signed_url("ab" * 32, "dev_1", secret, 100, now_s=1_700_000_000)
    assert link == (
        f"/api/ota/firmware/{'ab' * 32}?device=dev_1&expires=1700000100&sig="
        + download_links.signature(f"/api/ota/firmware/{'ab' * 32}", "dev_1", 1_700_000_100, secret)
    )
    import base64
    import hashlib

    expected = hashlib.md5(f"1700000100|/api/ota/firmware/{'ab' * 32}|dev_1|{secret}".encode()).digest()
    assert link.endswith("sig=" + base64.urlsafe_b64encode(expected).decode().rstrip("="))
    with pytest.raises(ValueError):
        download_links.signed_url("ab" * 32, "dev 1", secret, 100)


@pytest.mark.parametrize("content", ["", "short", "x" * 31, "bad chars$" * 4, "y" * 129])
def test_a_bad_secret_file_stops_serve_with_exit_2(tmp_path, content, capsys):
    secret_file = tmp_path / "secret"
    secret_file.write_text(content)
    with pytest.raises(CsiOtaError):
        download_links.load_secret(secret_file)
    argv = ["serve", "--data-dir", str(tmp_path / "d"), "--signed-download-links", str(secret_file)]
    assert cli_main(argv) == 2
    assert "download link secret" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_new_secret_never_overwrites_and_nginx_config_names_the_store(tmp_path, capsys):
    secret_file = tmp_path / "secret"
    assert cli_main(["download-links", "new-secret", str(secret_file)]) == 0
    before = secret_file.read_text()
    assert cli_main(["download-links", "new-secret", str(secret_file)]) == 2
    assert secret_file.read_text() == before
    capsys.readouterr()
    argv = [
        "download-links",
        "nginx-config",
        "--secret-file",
        str(secret_file),
        "--firmware-dir",
        str(tmp_path),
    ]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert f"alias {tmp_path.resolve()}/$csi_ota_sha256.bin;" in printed
    assert before.strip() in printed and "limit_conn csi_ota_downloads 4;" in printed
