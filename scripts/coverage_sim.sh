#!/usr/bin/env bash
# coverage_sim.sh — line coverage of the firmware that runs on every sensor
# (firmware/main and firmware/components/ota_port_espidf), reached by the virtual ESP32-S3:
# the C unit tests (CTest), tests/test_sim_e2e.py and the
# hardware tests on the sim (tests_hw --target sim), all against a gcov build of
# csi-ota-sim (firmware/sim/build/coverage, -DCSI_OTA_SIM_COVERAGE=ON).
# Writes out/coverage.txt (gcovr's per-file table and the total) and prints it.
#   scripts/coverage_sim.sh [--quick]    (--quick: CTest + tests/test_sim_e2e.py -m "not slow")
# Target: >= 85 % of the lines of those two directories; docs/sim.md lists what the
# virtual board cannot reach (radio-only and MQTT paths).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=firmware/sim/build/coverage
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1

cmake -S firmware/sim -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DCSI_OTA_SIM_COVERAGE=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
find "$BUILD" -name '*.gcda' -delete
ctest --test-dir "$BUILD" -j2 --timeout 600 --output-on-failure >/dev/null

export CSI_OTA_SIM_BINARY="$ROOT/$BUILD/csi-ota-sim"
export PYTHONPATH="$ROOT/host_tools${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
if [ "$QUICK" = 1 ]; then
  "$PY" -m pytest -q -p no:cacheprovider tests/test_sim_e2e.py -m "not slow" >/dev/null
else
  "$PY" -m pytest -q -p no:cacheprovider tests/test_sim_e2e.py >/dev/null
  "$PY" -m pytest -q -p no:cacheprovider tests_hw --target sim >/dev/null
fi

mkdir -p out
"$PY" -m gcovr --root "$ROOT" --object-directory "$BUILD" \
  --filter 'firmware/main/' --filter 'firmware/components/ota_port_espidf/' \
  --exclude 'firmware/main/test_host/' --exclude 'firmware/components/ota_port_espidf/test_host/' \
  --gcov-ignore-parse-errors=negative_hits.warn \
  --txt out/coverage.txt --print-summary >/dev/null
cat out/coverage.txt
total=$(awk '/^TOTAL/ {print $4}' out/coverage.txt)
echo "coverage: firmware/main + ota_port_espidf lines on the virtual ESP32-S3: $total (target 85%)"
