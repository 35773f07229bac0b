#!/usr/bin/env bash
# Runs every csi-ota test on a fresh Debian/Ubuntu machine:
#   1. installs the apt packages and the project's .venv (scripts/setup.sh); every
#      later step runs with .venv first on PATH (python3, pytest, ruff, csi-ota),
#   2. builds the virtual ESP32-S3 and runs its C unit tests (CTest),
#   3. runs the host test suite (pytest tests/), which starts real PostgreSQL,
#      Mosquitto, nginx and uvicorn processes on loopback by itself,
#   4. runs the hardware-in-the-loop suite against the virtual ESP32-S3
#      (pytest tests_hw --target sim), junit XML in out/.
# Extra arguments are passed to the host pytest run (e.g. -k budget).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out

./scripts/setup.sh
export VIRTUAL_ENV="$PWD/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
unset PYTHONPATH PYTHONHOME  # csi_ota comes from this checkout's .venv only

echo "== lint =="
ruff check host_tools tests tests_hw benchmarks
ruff format --check host_tools tests tests_hw benchmarks
find firmware -name build -prune -o \( -name '*.c' -o -name '*.h' \) -print0 | xargs -0 clang-format --dry-run --Werror

echo "== virtual ESP32-S3: build + C unit tests =="
./scripts/build_sim.sh
ctest --test-dir firmware/sim/build --output-on-failure -j2

echo "== fuzz targets of the device parsers (15 s each) =="
./scripts/fuzz.sh 15

echo "== host tests =="
python -m pytest tests --junitxml=out/tests.junit.xml --reruns 1 --reruns-delay 5 "$@"

if [ -x scripts/test_hw_sim.sh ]; then
  echo "== tests_hw on the virtual ESP32-S3 =="
  ./scripts/test_hw_sim.sh
fi

# tests_hw in hardware mode (esptool over RFC 2217, DTR/RTS resets, pytest-embedded-idf) against
# the virtual ESP32-S3 board, following README's "QA with a USB ESP32-S3" block (docs/vboard.md).
if [ -x scripts/test_hw_board.sh ]; then
  echo "== tests_hw in hardware mode on the virtual ESP32-S3 board =="
  ./scripts/test_hw_board.sh
fi

# --- coverage of the firmware on the virtual ESP32-S3 (issue 9; scripts/coverage_sim.sh) ---
echo "== coverage: firmware/main + ota_port_espidf on the virtual ESP32-S3 =="
./scripts/coverage_sim.sh --ci
