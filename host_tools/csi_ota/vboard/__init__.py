"""A virtual ESP32-S3 *board*: the chip of csi-ota-sim behind a serial port.

``csi-ota board serve --flash FILE --port N`` exposes one board on
``rfc2217://127.0.0.1:N`` (pyserial's RFC 2217 server side), so esptool and pytest-embedded
reach it with nothing but ``--port`` changed — the way Espressif's QEMU is reached by
``idf.py qemu flash``. See docs/vboard.md.

- :mod:`csi_ota.vboard.slip` — SLIP framing as the ROM loader speaks it.
- :mod:`csi_ota.vboard.loader` — the ROM serial loader and esptool's flasher stub: commands,
  checksums, status bytes, flash operations on the flash file.
- :mod:`csi_ota.vboard.board` — the board: DTR/RTS through the auto-reset circuit to EN and
  GPIO0, the ROM boot banner, download mode or the app (csi-ota-sim) on the same flash file.
- :mod:`csi_ota.vboard.server` — the RFC 2217 TCP server in front of the board.
- :mod:`csi_ota.vboard.builddir` — idf.py-like build directories for tests_hw's images.
- :mod:`csi_ota.vboard.parttool` — prints a binary partition table the way ESP-IDF's
  gen_esp32part.py does (pytest-embedded-idf's ``--part-tool`` without an ESP-IDF).
"""
