#!/usr/bin/env bash
# Runs tests_hw in hardware mode against the virtual ESP32-S3 *board* — esptool flashing over
# RFC 2217, DTR/RTS resets, the serial log, pytest-embedded-idf reading a build directory —
# exactly as against a USB ESP32-S3, with only --port changed (tests_hw/README.md, docs/vboard.md).
#
#   scripts/test_hw_board.sh [extra pytest args]      e.g. -k "s6 or s7"
#
# It follows the README's "QA with a USB ESP32-S3" flow line by line, on the virtual board:
#   1. a release key and the four test images (scripts/build_test_images.sh: no ESP-IDF here,
#      so idf.py-like build directories for the virtual board),
#   2. `csi-ota board serve` on a free loopback port (stopped on exit),
#   3. provisioning (csi-ota provision, every value incl. --data-url) written with esptool,
#      the v1 build flashed with esptool (bootloader, partition table, ota_data_initial.bin, app),
#   4. pytest tests_hw --embedded-services esp,idf --target esp32s3 --port rfc2217://127.0.0.1:PORT.
# Results: out/tests_hw-esp32s3.junit.xml (suite tests_hw-esp32s3), logs in out/tests_hw-esp32s3-logs/
# (each test's esptool commands and files under its folder), the board's log in out/vboard/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/host_tools${PYTHONPATH:+:$PYTHONPATH}"
work=out/vboard
rm -rf "$work" && mkdir -p "$work"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# 1. key + images
python3 -c 'from csi_ota.sim.runner import build_sim; print("simulator:", build_sim())'
python3 -m csi_ota keys generate "$work/release.pem"
python3 -m csi_ota keys show-public "$work/release.pem" --format kconfig > "$work/keys.sdkconfig"
CSI_OTA_EXTRA_SDKCONFIG="$PWD/$work/keys.sdkconfig" ./scripts/build_test_images.sh --virtual

# 2. the board
python3 -m csi_ota board serve --flash "$work/flash.bin" --port 0 --port-file "$work/port" \
  --config firmware/build_v1/config/csi-ota-sim.conf -v > "$work/board.log" 2>&1 &
board_pid=$!
trap 'kill "$board_pid" 2>/dev/null || true; wait "$board_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { echo "test_hw_board.sh: the board did not start:"; cat "$work/board.log"; exit 1; }
PORT=rfc2217://127.0.0.1:$(cat "$work/port")
HOST=127.0.0.1
SERVER_PORT=$(free_port)
TOKEN=vboard-token-$RANDOM$RANDOM
echo "virtual board on $PORT; test OTA server will be $HOST:$SERVER_PORT"

# 3. provision + flash (README: "Once per rig")
python3 -m csi_ota provision --device-id vboard-01 --auth-token "$TOKEN" \
  --version-check-url "http://$HOST:$SERVER_PORT/api/ota/version" \
  --update-url "http://$HOST:$SERVER_PORT/firmware/latest" \
  --data-url "http://$HOST:$SERVER_PORT" --no-auto-update --out "$work/nvs.bin"
python3 -m esptool --chip esp32s3 --port "$PORT" write-flash 0x9000 "$work/nvs.bin"
(cd firmware/build_v1 && python3 -m esptool --chip esp32s3 --port "$PORT" write-flash \
  0x0 bootloader/bootloader.bin 0x8000 partition_table/partition-table.bin \
  0x1d000 ota_data_initial.bin 0x20000 csi_sensor.bin)

# 4. the suite (README: "Every run")
rc=0
python3 -m pytest tests_hw --embedded-services esp,idf --target esp32s3 --port "$PORT" --app-path firmware \
  --release-key "$work/release.pem" --device-token "$TOKEN" \
  --host-address "$HOST" --ota-server-port "$SERVER_PORT" \
  --junitxml=out/tests_hw-esp32s3.junit.xml -o junit_suite_name=tests_hw-esp32s3 -o junit_family=xunit1 \
  --root-logdir=out/tests_hw-esp32s3-logs -p no:cacheprovider "$@" || rc=$?

python3 - <<'PY'
import xml.etree.ElementTree as ET
from pathlib import Path

junit = Path("out/tests_hw-esp32s3.junit.xml")
if junit.is_file():
    print(f"\n{'scenario (esp32s3, virtual board)':78} result")
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for tag, label in (("failure", "FAILED"), ("error", "ERROR"), ("skipped", "skipped")):
            if case.find(tag) is not None:
                outcome = label
        print(f"{case.get('name'):78} {outcome}")
    print(f"junit: {junit}")
PY
exit "$rc"
