"""The simulator's device actions — the fake behind the `device` fixture needs tests too.

Simulator only: on a board, erasing NVS would also erase its Wi-Fi provisioning.
"""

from __future__ import annotations

import pytest

from csi_ota_hw.device import DeviceSession

pytestmark = pytest.mark.sim


# -- the simulator's device actions (the fake behind the `device` fixture needs tests too) -----
def test_sim_device_actions_edit_the_flash_file(session: DeviceSession) -> None:
    device = session.device
    v1 = session.wait_ready()["version"]

    spiffs = device.partition("spiffs")
    assert spiffs.size > 0x2000
    device.write_partition("spiffs", b"\x12\x34" * 8, offset=0x1000)
    assert session.wait_ready(v1)  # a write power-cycles the virtual board, like esptool's reset
    assert device.read_partition("spiffs", 0x1000, 16) == b"\x12\x34" * 8
    device.corrupt_partition("spiffs", 0x1002, 2)
    session.wait_ready(v1)
    assert device.read_partition("spiffs", 0x1000, 6) == b"\x12\x34\xed\xcb\x12\x34"

    entries = session.otadata()
    assert [e.index for e in entries] == [0, 1]
    assert entries[0].crc_ok and entries[0].seq == 1 and entries[0].state == "valid"  # first boot wrote it

    # An update leaves OTA state in the KV store (NVS on the board); erase_nvs forgets it.
    session.update(session.kit.image("v2"), from_version=v1)
    assert session.status()["highest_sequence"] > 0
    device.erase_nvs()
    status = session.wait_ready()
    assert status["highest_sequence"] == 0 and status["last_report"]["seq"] == 0
    device.erase_partition("otadata")
    assert session.wait_ready()["running_slot"] == 0  # erased otadata: the bootloader starts ota_0 again
