"""L4 and https-only on the device (issue 12).

The device sends its bearer token only to the controller's own origin (scheme,
host and port of its version_check_url), never to the origin X-Firmware-Url
names; and unless the test-only CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP is set, it refuses every
http:// URL — check, pushed, `ota url` or firmware — before a byte leaves the device. The
https-only tests run the firmware built without that option (sdkconfig.ci.https_only,
csi-ota-sim-https-only).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from origin_support import Origin, origin_server  # noqa: E402

from csi_ota.certs import create_ca, create_server_cert  # noqa: E402
from csi_ota.sim.runner import SIM_HTTPS_ONLY_BINARY, SimConfig, SimProcess, build_sim  # noqa: E402
from sim_support import OtaTestServer, ReleaseSigner, app_image, write_flash  # noqa: E402

pytestmark = [pytest.mark.sim]

IMAGE_BYTES = 150_000
V1_BOOT = r"app: running partition ota_0, version 1\.0\.0"
V2_BOOT = r"app: running partition ota_1, version 2\.0\.0"


@pytest.fixture(scope="module")
def sim_binary() -> Path:
    return build_sim()


@pytest.fixture(scope="module")
def https_only_binary(sim_binary: Path) -> Path:
    assert SIM_HTTPS_ONLY_BINARY.exists()
    return SIM_HTTPS_ONLY_BINARY


def test_the_token_never_goes_to_the_origin_x_firmware_url_names(tmp_path: Path, sim_binary: Path) -> None:
    signer = ReleaseSigner()
    v2 = app_image("2.0.0", size_bytes=IMAGE_BYTES)
    with OtaTestServer(token="tok-l4") as server, origin_server(Origin(body=v2)) as cdn:
        server.publish(signer.release(v2))
        server.knobs.firmware_url = cdn.url + "/fw.bin"  # same host, another port: another origin
        flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
        config = SimConfig(
            device_id="csi_l4",
            version_check_url=server.version_url,
            trusted_keys=signer.trusted_keys,
            auth_token="tok-l4",
        ).write(tmp_path / "device.conf")
        with SimProcess(flash, config, binary=sim_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.send("ota check")
            sim.expect(V2_BOOT)  # the image is signed: the CDN needs no token
            server.wait_for_report("success")
            assert sim.stop() == 0
    assert cdn.authorizations and all(a is None for a in cdn.authorizations), cdn.authorizations
    assert server.records.unauthorised == 0  # the controller's origin still got the token


@pytest.fixture
def tls_bench(tmp_path: Path) -> Iterator[tuple[OtaTestServer, ReleaseSigner, SimConfig]]:
    ca = create_ca(tmp_path / "ca")
    cert = create_server_cert(tmp_path / "ca", tmp_path / "server")
    with OtaTestServer(token="tok-tls", tls=(cert.cert, cert.key)) as server:
        signer = ReleaseSigner()
        config = SimConfig(
            device_id="csi_https_only",
            version_check_url=server.version_url,
            trusted_keys=signer.trusted_keys,
            auth_token="tok-tls",
            ca_cert=str(ca.cert),
        )
        yield server, signer, config


def test_https_only_refuses_a_plain_http_firmware_url(
    tmp_path: Path, https_only_binary: Path, tls_bench
) -> None:
    server, signer, config = tls_bench
    config.write(tmp_path / "device.conf")
    v2 = app_image("2.0.0", size_bytes=IMAGE_BYTES)
    server.publish(signer.release(v2))
    flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
    with origin_server(Origin(body=v2)) as cdn:
        server.knobs.firmware_url = cdn.url + "/fw.bin"
        with SimProcess(flash, tmp_path / "device.conf", binary=https_only_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.send("ota check")
            sim.expect(r"ota: rejected: insecure_url")
            server.knobs.firmware_url = ""  # the controller's own https origin
            sim.send("ota check")
            sim.expect(V2_BOOT)
            server.wait_for_report("success")
            assert sim.stop() == 0
    assert cdn.authorizations == []  # not a single plain-HTTP request
    assert ("rejected", "insecure_url") in server.report_states()


def test_https_only_refuses_http_check_urls_pushed_and_typed(
    tmp_path: Path, https_only_binary: Path, tls_bench
) -> None:
    server, signer, config = tls_bench
    flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
    with OtaTestServer(token="tok-tls") as plain:
        # A pushed http:// check URL is not applied; `ota url http://…` is refused.
        server.knobs.device_config = f"version_check_url={plain.version_url}&check_interval_sec=900"
        config.write(tmp_path / "device.conf")
        with SimProcess(flash, tmp_path / "device.conf", binary=https_only_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.send("ota check")
            sim.expect(r"ota: config push: invalid value for version_check_url ignored")
            sim.expect(r"ota: up to date \(running 1\.0\.0\)")
            sim.send(f"ota url {plain.version_url}")
            sim.expect(r"ota_client: console command failed: OTA_ERR_INSECURE_URL")
            sim.send("ota check")
            sim.expect(r"ota: up to date \(running 1\.0\.0\)")
            assert sim.stop() == 0
        # Provisioned with an http:// check URL: nothing is sent, the token stays home.
        config.version_check_url = plain.version_url
        config.write(tmp_path / "plain.conf")
        with SimProcess(flash, tmp_path / "plain.conf", binary=https_only_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.send("ota check")
            sim.expect(r"ota: refusing http://127\.0\.0\.1:\d+/api/ota/version\S*: https only")
            sim.expect(r"ota: rejected: insecure_url")
            assert sim.stop() == 0
        assert (
            plain.records.checks == [] and plain.records.heartbeats == [] and plain.records.unauthorised == 0
        )
