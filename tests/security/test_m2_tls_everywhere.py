"""M2: admin tokens and device credentials do not travel in clear.

Before: the management port (admin tokens) was plain HTTP even with --tls-cert, the shipped
mosquitto.conf listened on plain 1883 and the firmware's default MQTT URI was mqtt://…:1883.
Now: with --tls-cert both ports speak TLS (plain management only with the explicit
--insecure-management-http), the controller's MQTT bridge speaks TLS to a broker whose
certificate `csi-ota certs broker` issues from the same local CA, the shipped broker config
listens on 8883 with TLS only, and the firmware defaults to mqtts://…:8883. A device's MQTT password
is HMAC-SHA256(token, label) (firmware: ota_mqtt_password), so the broker never holds a credential
that opens the HTTPS API.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from mqtt_support import SHIPPED_MOSQUITTO_CONF, MqttConnection, metric, poll, write_acl_files

from csi_ota import certs
from csi_ota.cli import cli
from csi_ota.controller.tokens import mqtt_password_for
from services import mosquitto_broker, start_controller

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def local_ca(tmp_path) -> Path:
    certs.create_ca(tmp_path / "ca")
    certs.create_server_cert(tmp_path / "ca", tmp_path / "server")
    return tmp_path


def test_management_port_speaks_tls_when_the_device_port_does(local_ca):
    server = start_controller(
        local_ca / "data",
        tls_cert=local_ca / "server" / "server.crt",
        tls_key=local_ca / "server" / "server.key",
        management_tls=True,
    )
    try:
        assert server.management_url.startswith("https://")
        plain = server.management_url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):  # a plain-HTTP request gets no HTTP answer
            httpx.get(f"{plain}/api/whoami", headers=server.admin_headers(), timeout=5)
        with pytest.raises(httpx.ConnectError):  # and an unknown CA is refused by a verifying client
            httpx.get(f"{server.management_url}/healthz", timeout=5)
        verified = httpx.get(
            f"{server.management_url}/api/whoami",
            headers=server.admin_headers(),
            verify=ssl.create_default_context(cafile=str(local_ca / "ca" / "ca.crt")),
            timeout=10,
        )
        assert verified.status_code == 200 and verified.json()["role"] == "admin"
        # The CLI verifies against CSI_OTA_CA_CERT.
        env = dict(
            os.environ, CSI_OTA_TOKEN=server.admin_token, CSI_OTA_CA_CERT=str(local_ca / "ca" / "ca.crt")
        )
        whoami = subprocess.run(
            [sys.executable, "-m", "csi_ota", "admin", "whoami", "--server", server.management_url],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert whoami.returncode == 0, whoami.stderr
    finally:
        server.stop()


def test_plain_management_needs_the_explicit_flag(local_ca):
    server = start_controller(  # the fixture passes --insecure-management-http when management_tls=False
        local_ca / "data",
        tls_cert=local_ca / "server" / "server.crt",
        tls_key=local_ca / "server" / "server.key",
    )
    try:
        assert "--insecure-management-http" in server.argv
        assert httpx.get(f"{server.management_url}/healthz", timeout=5).status_code == 200
        assert "management on http://" in server.log()
    finally:
        server.stop()


@pytest.mark.mosquitto
def test_mqtt_over_tls_with_a_broker_certificate_from_csi_ota_certs(local_ca, tmp_path):
    broker_dir = tmp_path / "broker-tls"
    issued = CliRunner().invoke(
        cli,
        [
            "certs",
            "broker",
            "--ca-dir",
            str(local_ca / "ca"),
            "--out",
            str(broker_dir),
            "--hostname",
            "127.0.0.1",
        ],
    )
    assert issued.exit_code == 0, issued.output
    setup = start_controller(tmp_path / "data")
    with setup.management_client() as mgmt:
        token = mgmt.post("/api/devices", json={"device_id": "m2_dev"}).json()["token"]
    acl_dir = write_acl_files(setup, tmp_path / "mqtt")
    setup.stop()
    tls_lines = [
        f"cafile {broker_dir / 'ca.crt'}",
        f"certfile {broker_dir / 'server.crt'}",
        f"keyfile {broker_dir / 'server.key'}",
    ]
    with mosquitto_broker(
        password_file=acl_dir / "passwd", acl_file=acl_dir / "acl", extra_config=tls_lines
    ) as broker:
        server = start_controller(
            tmp_path / "data",
            admin_token=setup.admin_token,
            mqtt=broker,
            mqtt_username="ota-controller",
            extra_args=[
                "--mqtt-password-file",
                str(acl_dir / "controller.password"),
                "--mqtt-tls-ca",
                str(broker_dir / "ca.crt"),
            ],
        )
        device = MqttConnection.__new__(MqttConnection)
        try:
            plain = MqttConnection(broker.port, "m2_dev", token, wait_s=5)  # no TLS: the broker does not talk
            assert not plain.accepted
            plain.close()
            # The broker does not take the API token itself as the MQTT password ...
            raw = MqttConnection(
                broker.port, "m2_dev", token, tls_ca=broker_dir / "ca.crt", raw_password=True
            )
            assert not raw.accepted
            raw.close()
            device = MqttConnection(broker.port, "m2_dev", token, tls_ca=broker_dir / "ca.crt")
            assert device.accepted
            # ... and the MQTT password (derived from the token) does not open the HTTPS API.
            with server.device_client(mqtt_password_for(token)) as api:
                assert api.get("/api/ota/version", params={"device_id": "m2_dev"}).status_code == 401
            with server.device_client(token) as api:
                assert api.get("/api/ota/version", params={"device_id": "m2_dev"}).status_code == 204
            recorded = poll(
                lambda: (
                    device.publish("csi/m2_dev/heartbeat", {"uptime_s": 7}),
                    metric(server, "csi_ota_heartbeats_total", 'transport="mqtt"'),
                )[1],
                lambda count: count >= 1,
            )
            assert recorded >= 1, server.log()
        finally:
            if getattr(device, "client", None) is not None:
                device.close()
            server.stop()


def test_shipped_configuration_uses_tls():
    conf = SHIPPED_MOSQUITTO_CONF.read_text()
    listeners = re.findall(r"^listener\s+(\d+)", conf, re.MULTILINE)
    assert listeners == ["8883"], "the shipped broker must not listen on plain 1883"
    for option in ("cafile", "certfile", "keyfile"):
        assert re.search(rf"^{option}\s+\S+", conf, re.MULTILINE), option
    kconfig = (ROOT / "firmware" / "main" / "Kconfig.projbuild").read_text()
    assert 'default "mqtts://ota-controller.local:8883"' in kconfig
    compose = (ROOT / "deploy" / "docker-compose-ota.yml").read_text()
    assert "1883" not in compose and "--mqtt-tls-ca" in compose
    assert "--insecure-management-http" not in compose and "--insecure-http" not in compose
