"""tests_hw: one suite, two targets.

Hardware (a USB ESP32-S3, or the virtual board of ``csi-ota board serve`` on
``rfc2217://127.0.0.1:PORT``; pytest-embedded's esp + idf services)::

    pytest tests_hw --embedded-services esp,idf --target esp32s3 --port /dev/ttyUSB0 --app-path firmware

Virtual ESP32-S3 (firmware/sim, no hardware)::

    pytest tests_hw --target sim

``--target`` is pytest-embedded's own option; ``sim`` selects the simulator. Tests carry the
markers ``esp32s3`` and/or ``sim`` and are skipped on a target they do not support. Every
scenario uses the same fixtures: ``dut`` (pytest-embedded's DUT, or :class:`SimDut`),
``device`` (reset / write / corrupt / read otadata / erase NVS), ``ota_server`` (the
misbehaving-on-demand OTA server the device talks to) and ``release_kit`` (keys, images and
signed manifests). See tests_hw/README.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from csi_ota_hw.actions import EsptoolActions, SimActions
from csi_ota_hw.device import DeviceSession
from csi_ota_hw.ota_server import OtaTestServer
from csi_ota_hw.releases import BASE_IMAGES, ReleaseKit
from csi_ota_hw.sim_dut import SimDut, SimLaunch
from csi_ota_hw.sim_env import SIM_DEVICE_ID, SIM_TOKEN, SimEnvironment, write_sim_config

REPO = Path(__file__).resolve().parents[1]
SIM_TARGET = "sim"
HW_TARGET = "esp32s3"
DEFAULT_HW_BUILD_DIR = "build_v1"
DEFAULT_HW_SERVER_PORT = 8070
# ESP-IDF's gen_esp32part.py reads the build's partition table for pytest-embedded-idf; without
# an ESP-IDF this stand-in prints the same CSV (csi_ota.vboard.parttool).
PART_TOOL_STANDIN = REPO / "host_tools" / "csi_ota" / "vboard" / "parttool.py"
DRAIN_QUIET_S = 0.3
DRAIN_MAX_S = 5.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("csi-ota-hw", "csi-ota tests_hw (see tests_hw/README.md)")
    group.addoption(
        "--sim-binary",
        default=None,
        help="virtual ESP32-S3 binary (default: firmware/sim/build/csi-ota-sim, built when missing or stale)",
    )
    group.addoption(
        "--host-address",
        default=os.environ.get("CSI_OTA_HOST_ADDRESS"),
        help="hardware: this host's address as the board sees it, for the test OTA server "
        "(env CSI_OTA_HOST_ADDRESS; default: the address of the interface with the default route)",
    )
    group.addoption(
        "--ota-server-port",
        type=int,
        default=int(os.environ.get("CSI_OTA_SERVER_PORT", "0")),
        help="port of the test OTA server (env CSI_OTA_SERVER_PORT; default: any free port on the simulator, "
        f"{DEFAULT_HW_SERVER_PORT} on hardware — the board's provisioned data_url names it)",
    )
    group.addoption(
        "--device-token",
        default=os.environ.get("CSI_OTA_DEVICE_TOKEN"),
        help="hardware: the device token provisioned on the board (env CSI_OTA_DEVICE_TOKEN)",
    )
    group.addoption(
        "--release-key",
        default=os.environ.get("CSI_OTA_RELEASE_KEY"),
        help="hardware: the release key whose public half the test images trust (env CSI_OTA_RELEASE_KEY)",
    )
    group.addoption(
        "--sweep-workers",
        type=int,
        default=2,
        help="simulator: parallel virtual devices in the power-cut sweep (default 2)",
    )


def _target(config: pytest.Config) -> str:
    return (config.getoption("target", None) or "").lower()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sim: runs against the virtual ESP32-S3 (--target sim)")
    config.addinivalue_line("markers", "esp32s3: runs against a USB-attached ESP32-S3 (--target esp32s3)")
    # pytest-embedded's autouse app_path fixture uses this experimental API on every test.
    config.addinivalue_line("filterwarnings", "ignore::pytest.PytestExperimentalApiWarning")
    if _target(config) in ("", SIM_TARGET):
        return
    services = config.getoption("embedded_services", None) or ""
    if isinstance(services, str):
        services = [x.strip() for x in services.split(",") if x.strip()]
    if not {"esp", "idf"} <= set(services):
        raise pytest.UsageError(
            f"--target {_target(config)} needs pytest-embedded's board services: "
            "add --embedded-services esp,idf (tests_hw/README.md)"
        )
    if config.getoption("build_dir", None) is None:
        # The board runs the v1 test image built by scripts/build_test_images.sh.
        config.option.build_dir = DEFAULT_HW_BUILD_DIR
    if config.getoption("part_tool", None) is None and not os.environ.get("IDF_PATH"):
        config.option.part_tool = str(PART_TOOL_STANDIN)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    target = _target(config)
    if target in ("", SIM_TARGET):
        marker, why = SIM_TARGET, "needs a USB ESP32-S3 (--embedded-services esp,idf --target esp32s3)"
    else:
        marker, why = HW_TARGET, "runs only on the virtual ESP32-S3 (--target sim)"
    for item in items:
        if item.get_closest_marker(marker) is None:
            item.add_marker(pytest.mark.skip(reason=why))


# -- session -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ota_target(pytestconfig: pytest.Config) -> str:
    target = _target(pytestconfig)
    if target in ("", SIM_TARGET):
        return SIM_TARGET
    if target != HW_TARGET:
        pytest.exit(f"tests_hw supports --target sim or --target {HW_TARGET}, not {target!r}", returncode=4)
    return HW_TARGET


@pytest.fixture(scope="session")
def sim_binary(pytestconfig: pytest.Config, ota_target: str) -> Path:
    if ota_target != SIM_TARGET:
        pytest.skip("the virtual ESP32-S3 is used with --target sim only")
    explicit = pytestconfig.getoption("sim_binary")
    if explicit:
        path = Path(explicit)
        if not os.access(path, os.X_OK):
            pytest.exit(f"--sim-binary {path} is not an executable file", returncode=4)
        return path
    from csi_ota.sim.runner import build_sim

    return Path(build_sim())


def reachable_host_address() -> str:
    """The address of the interface holding the default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: only used to pick a route
        except OSError:
            return "127.0.0.1"
        return sock.getsockname()[0]


@pytest.fixture(scope="session")
def release_kit(
    tmp_path_factory: pytest.TempPathFactory, ota_target: str, pytestconfig: pytest.Config
) -> ReleaseKit:
    workdir = tmp_path_factory.mktemp("releases")
    if ota_target == SIM_TARGET:
        return ReleaseKit(workdir)
    key = pytestconfig.getoption("release_key")
    if not key:
        pytest.exit("hardware runs need --release-key (the key the test images trust)", returncode=4)
    app_path = Path(pytestconfig.getoption("app_path") or REPO / "firmware")
    files = {}
    for name in BASE_IMAGES:
        build = app_path / f"build_{name}"
        files[name] = build / _app_bin_name(build)
    return ReleaseKit(workdir, key_path=Path(key), image_files=files)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _app_bin_name(build_dir: Path) -> str:
    import json

    description = build_dir / "project_description.json"
    if not description.is_file():
        return "csi_sensor.bin"
    return json.loads(description.read_text())["app_bin"]


# -- per test ------------------------------------------------------------------------------------
@pytest.fixture
def ota_server(ota_target: str, pytestconfig: pytest.Config) -> Iterator[OtaTestServer]:
    if ota_target == SIM_TARGET:
        server = OtaTestServer(token=SIM_TOKEN, port=pytestconfig.getoption("ota_server_port"))
    else:
        token = pytestconfig.getoption("device_token")
        if not token:
            pytest.exit(
                "hardware runs need --device-token (the token provisioned on the board)", returncode=4
            )
        host = pytestconfig.getoption("host_address") or reachable_host_address()
        port = pytestconfig.getoption("ota_server_port") or DEFAULT_HW_SERVER_PORT
        # A board on the network needs every interface; the virtual board (host 127.0.0.1) only loopback.
        bind = host if _is_loopback(host) else "0.0.0.0"
        server = OtaTestServer(bind_host=bind, port=port, advertised_host=host, token=token)
    with server:
        yield server


@pytest.fixture
def sim_env(
    ota_target: str, sim_binary: Path, release_kit: ReleaseKit, ota_server: OtaTestServer, tmp_path: Path
):
    """A fresh flash file (v1 in ota_0, nothing else) and config for this test's virtual device."""
    env = SimEnvironment.create(
        tmp_path / "device",
        binary=sim_binary,
        v1_image=release_kit.image("v1"),
        config=write_sim_config(
            tmp_path / "device" / "sim.conf",
            server=ota_server,
            device_id=SIM_DEVICE_ID,
            token=SIM_TOKEN,
            key_id=release_kit.key_id,
            public_key_raw=release_kit.public_key_raw,
        ),
    )
    yield env
    with contextlib.suppress(OSError):
        shutil.rmtree(env.workdir)


@pytest.fixture
def dut(dut, ota_target: str, request: pytest.FixtureRequest):  # noqa: F811 - wraps pytest-embedded's dut
    """pytest-embedded's DUT on hardware; on the simulator a :class:`SimDut` on the same plumbing."""
    if ota_target != SIM_TARGET:
        serial = getattr(dut, "serial", None)
        if serial is None or not hasattr(serial, "esp"):
            pytest.exit("--target esp32s3 needs --embedded-services esp,idf", returncode=4)
        actions = EsptoolActions.from_idf_app(
            serial, dut.app, files_dir=Path(dut.logdir) / "esptool", drain=lambda: drain_output(dut)
        )
        dut.csi_ota_actions = actions
        # Every test starts from the build as flashed: bootloader, partition table,
        # ota_data_initial.bin (otadata erased: the board boots ota_0) and v1. pytest-embedded
        # skips ports it flashed before (and an OTA test leaves another app in ota_1), so the
        # build is written again here, then the board reset once its old output is dropped.
        # NVS is kept, as on any board: Wi-Fi, token, URLs, and the client's records.
        actions.flash_build(dut.app)
        yield dut
        return
    env: SimEnvironment = request.getfixturevalue("sim_env")
    sim = SimDut(
        launch=SimLaunch(binary=env.binary, flash_path=env.flash_path, args=env.args()),
        pexpect_proc=dut.pexpect_proc,
        msg_queue=dut._q,
        app=dut.app,
        pexpect_logfile=dut.logfile,
        test_case_name=dut.test_case_name,
        meta=dut._meta,
    )
    sim.start()
    try:
        yield sim
    finally:
        sim.close()


@pytest.fixture
def device(dut, ota_target: str, request: pytest.FixtureRequest):
    """Device actions: esptool on hardware, the flash file on the simulator."""
    if ota_target == SIM_TARGET:
        env: SimEnvironment = request.getfixturevalue("sim_env")
        return SimActions(dut, env.flash_path)
    return dut.csi_ota_actions


def drain_output(dut, quiet_s: float = DRAIN_QUIET_S, max_s: float = DRAIN_MAX_S) -> None:
    """Drop everything the DUT printed so far (until it has been quiet for ``quiet_s``)."""
    import pexpect

    proc = dut.pexpect_proc
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        try:
            proc.read_nonblocking(65536, timeout=quiet_s)
        except (pexpect.TIMEOUT, pexpect.EOF):
            break
    proc.buffer = b""


@pytest.fixture
def session(
    dut, device, ota_server: OtaTestServer, release_kit: ReleaseKit, ota_target: str
) -> DeviceSession:
    """The scenario helper: the DUT, its actions, the server it talks to and the releases."""
    return DeviceSession(dut=dut, device=device, server=ota_server, kit=release_kit, target=ota_target)
