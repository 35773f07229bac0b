"""Plumbing for the tests_hw suite: one test body, a USB ESP32-S3 or the virtual ESP32-S3.

- :mod:`csi_ota_hw.sim_dut` — the virtual ESP32-S3 as a pytest-embedded DUT (its own
  ``Dut`` and ``DuplicateStdoutPopen`` base classes), with a throttled stdout redirect.
- :mod:`csi_ota_hw.actions` — reset, write/corrupt a partition, read otadata, erase NVS:
  esptool command lines on hardware, the flash file on the simulator.
- :mod:`csi_ota_hw.device` — ``DeviceSession``: the steps and documented log lines the
  scenarios are written in.
- :mod:`csi_ota_hw.ota_server` — a small threaded HTTP server speaking the device protocol
  (docs/device-protocol.md) that records every report and can misbehave on purpose.
- :mod:`csi_ota_hw.releases` — signed releases (good and deliberately bad) for the scenarios.
- :mod:`csi_ota_hw.sim_env` — the virtual device's flash file and configuration.
- :mod:`csi_ota_hw.power_cut` — the power cut at every flash operation of an update.
"""
