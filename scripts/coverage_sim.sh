#!/usr/bin/env bash
# coverage_sim.sh — line coverage of the firmware that runs on every sensor
# (firmware/main and firmware/components/ota_port_espidf), reached on the virtual ESP32-S3 by
# the C unit tests (CTest), tests/test_sim_e2e.py, tests/test_sim_mqtt.py and the hardware
# tests on the sim (tests_hw --target sim), all against a gcov build of csi-ota-sim and its
# variants (firmware/sim/build/coverage, -DCSI_OTA_SIM_COVERAGE=ON).
# Writes out/coverage.txt (gcovr's per-file table with the missing lines, and the total) and
# prints it; docs/sim.md ("Coverage") says why the remaining lines are not reached.
#
#   scripts/coverage_sim.sh          everything above (about 8 min on 2 cores)
#   scripts/coverage_sim.sh --ci     the same without the two long sweeps (CTest's NVS
#                                    power-cut sweep, tests_hw's s9 and test_sim_e2e's slow
#                                    sweep): what scripts/test.sh runs, about 4 min
# Target: >= 85 % of the lines of those two directories.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=firmware/sim/build/coverage
MODE=full
case "${1:-}" in
  "") ;;
  --ci) MODE=ci ;;
  *) echo "usage: scripts/coverage_sim.sh [--ci]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python

# A fresh build each run: .gcno files of sources that were moved or deleted since the last
# coverage build would otherwise stay in the tree and stop gcovr.
rm -rf "$BUILD"
cmake -S firmware/sim -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DCSI_OTA_SIM_COVERAGE=ON \
  -DPython3_EXECUTABLE="$(command -v "$PY")" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
find "$BUILD" -name '*.gcda' -delete

export CSI_OTA_SIM_BINARY="$ROOT/$BUILD/csi-ota-sim"
export PYTHONPATH="$ROOT/host_tools${PYTHONPATH:+:$PYTHONPATH}"
log=out/coverage-runs.log
mkdir -p out
: >"$log"
run() { # a failing test does not stop the measurement; its output is kept in $log
  echo "+ $*" >>"$log"
  "$@" >>"$log" 2>&1 || echo "coverage_sim: '$*' failed (see $log)"
}
if [ "$MODE" = ci ]; then
  run ctest --test-dir "$BUILD" -j2 --timeout 600 -LE sim_nvs
  run "$PY" -m pytest -q -p no:cacheprovider -p no:rerunfailures tests/test_sim_e2e.py tests/test_sim_mqtt.py \
    -m "not slow"
  run "$PY" -m pytest -q -p no:cacheprovider -p no:rerunfailures tests_hw --target sim \
    --sim-binary "$CSI_OTA_SIM_BINARY" -k "not s9_power_cut_at_every"
else
  run ctest --test-dir "$BUILD" -j2 --timeout 900
  run "$PY" -m pytest -q -p no:cacheprovider -p no:rerunfailures tests/test_sim_e2e.py tests/test_sim_mqtt.py
  run "$PY" -m pytest -q -p no:cacheprovider -p no:rerunfailures tests_hw --target sim \
    --sim-binary "$CSI_OTA_SIM_BINARY"
fi

"$PY" -m gcovr --root "$ROOT" "$BUILD" \
  --filter 'firmware/main/' --filter 'firmware/components/ota_port_espidf/' \
  --exclude 'firmware/main/test_host/' --exclude 'firmware/components/ota_port_espidf/test_host/' \
  --gcov-ignore-parse-errors=negative_hits.warn --merge-mode-functions=merge-use-line-max \
  --txt out/coverage.txt >/dev/null
cat out/coverage.txt
total=$(awk '/^TOTAL/ {print $4}' out/coverage.txt)
echo "coverage ($MODE): firmware/main + components/ota_port_espidf lines reached on the virtual ESP32-S3: $total (target 85%)"
