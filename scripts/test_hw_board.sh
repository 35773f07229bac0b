#!/usr/bin/env bash
# Runs tests_hw in hardware mode against the virtual ESP32-S3 *board* — esptool flashing over
# RFC 2217, DTR/RTS resets, the serial log, pytest-embedded-idf reading a build directory —
# exactly as against a USB ESP32-S3, with only --port changed (tests_hw/README.md, docs/vboard.md).
#
#   scripts/test_hw_board.sh [extra pytest args]      e.g. -k "s6 or s7"
#
# It starts `csi-ota board serve` on a free loopback port (stopped on exit), then runs the
# README's "QA with a USB ESP32-S3" block exactly as written — only PORT, HOST and SERVER_PORT
# set to the virtual board's values: a release key and the four test images
# (scripts/build_test_images.sh; no ESP-IDF here, so idf.py-like build directories for the
# virtual board), provisioning with every value incl. --data-url, esptool writing it and the v1
# build (bootloader, partition table, ota_data_initial.bin, app), then
# pytest tests_hw --embedded-services esp,idf --target esp32s3 --port rfc2217://127.0.0.1:PORT.
# Extra arguments reach pytest through PYTEST_ADDOPTS.
# Results: out/tests_hw-esp32s3.junit.xml (suite tests_hw-esp32s3), logs in out/tests_hw-esp32s3-logs/
# (each test's esptool commands and files under its folder), the board's log in out/vboard/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/host_tools${PYTHONPATH:+:$PYTHONPATH}"
work=out/vboard
rm -rf "$work" out/qa out/tests_hw-esp32s3.junit.xml out/tests_hw-esp32s3-logs && mkdir -p "$work"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# 1. the board, on a free loopback port (its app settings are written by step 2's image build)
python3 -c 'from csi_ota.sim.runner import build_sim; print("simulator:", build_sim())'
python3 -m csi_ota board serve --flash "$work/flash.bin" --port 0 --port-file "$work/port" \
  --config firmware/build_v1/config/csi-ota-sim.conf -v > "$work/board.log" 2>&1 &
board_pid=$!
trap 'kill "$board_pid" 2>/dev/null || true; wait "$board_pid" 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s "$work/port" ] && break; sleep 0.1; done  # up to 60 s on a busy machine
[ -s "$work/port" ] || { echo "test_hw_board.sh: the board did not start:"; cat "$work/board.log"; exit 1; }

# 2. README.md's "QA with a USB ESP32-S3" block, as written, with the virtual board's values
#    for PORT / HOST / SERVER_PORT; results and logs added through PYTEST_ADDOPTS.
python3 - "$work/qa.sh" "rfc2217://127.0.0.1:$(cat "$work/port")" "$(free_port)" <<'PY'
import re
import sys
from pathlib import Path

out, port, server_port = sys.argv[1:]
readme = Path("README.md").read_text()
section = readme.split("## QA with a USB ESP32-S3", 1)[1]
block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
values = {"PORT": port, "HOST": "127.0.0.1", "SERVER_PORT": server_port}
lines = []
for line in block.splitlines():
    name = line.split("=", 1)[0]
    if name in values and line.startswith(name + "="):
        line = f"{name}={values.pop(name)}"
    lines.append(line)
assert not values, f"README's QA block no longer sets {sorted(values)}"
Path(out).write_text("set -euxo pipefail\n" + "\n".join(lines) + "\n")
PY
echo "== README QA flow on the virtual board =="
cat "$work/qa.sh"
csi_ota_bin="$work/bin"
mkdir -p "$csi_ota_bin"
if ! command -v csi-ota >/dev/null; then  # not pip-installed: the same CLI from the tree
  printf '#!/bin/sh\nexec python3 -m csi_ota "$@"\n' > "$csi_ota_bin/csi-ota" && chmod +x "$csi_ota_bin/csi-ota"
fi
addopts="--junitxml=out/tests_hw-esp32s3.junit.xml -o junit_suite_name=tests_hw-esp32s3 -o junit_family=xunit1"
addopts+=" --root-logdir=out/tests_hw-esp32s3-logs -p no:cacheprovider"
[ $# -eq 0 ] || addopts+=" $(printf '%q ' "$@")"
rc=0
PATH="$PWD/$csi_ota_bin:$PATH" PYTEST_ADDOPTS="$addopts" bash "$work/qa.sh" || rc=$?

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
