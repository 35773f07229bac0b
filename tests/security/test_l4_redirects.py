"""L4 through redirects: the device never follows https -> http, and its token never follows a
redirect to another origin.

The virtual ESP32-S3 runs its default build (plain http allowed for tests, so the https-only
gate of the core is not what refuses here; seen failing with the ports' rules taken out): the HTTP port itself must refuse a redirect from an
https URL to a plain-http one — for the version check (the request that carries the bearer
token) and for the firmware download — before a byte goes to the plain-http server. A redirect
from https to https on another origin is followed without the token: a signed image from a CDN
installs, and a version check sent elsewhere arrives there without Authorization.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from origin_support import Origin, origin_server  # noqa: E402

from csi_ota.certs import create_ca, create_server_cert  # noqa: E402
from csi_ota.sim.runner import SimConfig, SimProcess, build_sim  # noqa: E402
from sim_support import OtaTestServer, ReleaseSigner, app_image, write_flash  # noqa: E402

pytestmark = [pytest.mark.sim]

IMAGE_BYTES = 150_000
V1_BOOT = r"app: running partition ota_0, version 1\.0\.0"
V2_BOOT = r"app: running partition ota_1, version 2\.0\.0"
CHECK_DONE_S = 30.0


@pytest.fixture(scope="module")
def sim_binary() -> Path:
    return build_sim()  # the firmware over the ESP-IDF port, plain http allowed (test build)


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[tuple[Path, Path], Path]:
    ca = create_ca(tmp_path / "ca")
    cert = create_server_cert(tmp_path / "ca", tmp_path / "server")
    return (cert.cert, cert.key), ca.cert


def _device(tmp_path: Path, signer: ReleaseSigner, check_url: str, token: str, ca: Path) -> tuple[Path, Path]:
    flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
    config = SimConfig(
        device_id="csi_redirect",
        version_check_url=check_url,
        trusted_keys=signer.trusted_keys,
        auth_token=token,
        ca_cert=str(ca),
    ).write(tmp_path / "device.conf")
    return flash, config


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_version_check_is_not_redirected_from_https_to_http(
    tmp_path: Path, sim_binary: Path, tls_cert, status: int
) -> None:
    cert, ca = tls_cert
    signer = ReleaseSigner()
    with (
        OtaTestServer(token="tok-redirect") as plain,
        origin_server(Origin(status=status), tls=cert) as controller,
    ):
        plain.publish(signer.release(app_image("2.0.0", size_bytes=IMAGE_BYTES)))
        controller.redirect_to = plain.version_url + "?from=redirect"
        flash, config = _device(tmp_path, signer, f"{controller.url}/api/ota/version", "tok-redirect", ca)
        with SimProcess(flash, config, binary=sim_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.send("ota check")
            sim.expect(r"ota: check failed", CHECK_DONE_S)
            sim.send("ota check")  # the device stays usable, and still refuses
            sim.expect(r"ota: check failed", CHECK_DONE_S)
            assert sim.stop() == 0
        assert len(controller.paths) >= 2  # the https origin was asked (with the token: its own)
        assert plain.records.checks == [] and plain.records.unauthorised == 0, "a request went over http"


def test_a_firmware_download_is_not_redirected_from_https_to_http(
    tmp_path: Path, sim_binary: Path, tls_cert
) -> None:
    cert, ca = tls_cert
    signer = ReleaseSigner()
    v2 = app_image("2.0.0", size_bytes=IMAGE_BYTES)
    with (
        OtaTestServer(token="tok-redirect", tls=cert) as server,
        origin_server(Origin(body=v2)) as plain_cdn,
        origin_server(Origin(body=v2), tls=cert) as tls_cdn,
        origin_server(Origin(status=302), tls=cert) as redirector,
    ):
        server.publish(signer.release(v2))
        server.knobs.firmware_url = f"{redirector.url}/fw.bin"
        redirector.redirect_to = f"{plain_cdn.url}/fw.bin"
        flash, config = _device(tmp_path, signer, server.version_url, "tok-redirect", ca)
        with SimProcess(flash, config, binary=sim_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.send("ota check")
            server.wait_for_report("failed")
            assert plain_cdn.paths == [], "the download followed a redirect to http"
            # Positive control: the same redirect to an https CDN is followed (without the token).
            redirector.redirect_to = f"{tls_cdn.url}/fw.bin"
            sim.send("ota check")
            sim.expect(V2_BOOT)
            server.wait_for_report("success")
            assert sim.stop() == 0
    assert plain_cdn.paths == []
    assert redirector.paths and tls_cdn.paths
    # Neither the redirector nor the CDN is the controller's origin: no token to either.
    assert all(a is None for a in redirector.authorizations + tls_cdn.authorizations)
    assert server.records.unauthorised == 0  # the controller's origin still got it


def test_the_token_does_not_follow_a_redirect_to_another_https_origin(
    tmp_path: Path, sim_binary: Path, tls_cert
) -> None:
    cert, ca = tls_cert
    signer = ReleaseSigner()
    with (
        OtaTestServer(token="tok-redirect", tls=cert) as elsewhere,
        origin_server(Origin(status=307), tls=cert) as controller,
    ):
        controller.redirect_to = elsewhere.version_url
        flash, config = _device(tmp_path, signer, f"{controller.url}/api/ota/version", "tok-redirect", ca)
        with SimProcess(flash, config, binary=sim_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.send("ota check")
            sim.expect(r"ota: check failed", CHECK_DONE_S)
            assert sim.stop() == 0
    assert controller.authorizations and all(a == "Bearer tok-redirect" for a in controller.authorizations)
    # Followed, but without the token: the other origin saw the request and refused it.
    assert elsewhere.records.unauthorised >= 1 and elsewhere.records.checks == []
