#!/usr/bin/env bash
# Builds the virtual ESP32-S3 (firmware/sim) and its C unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python_args=()
# Tests that need csi_ota run with the project's environment (scripts/setup.sh) when it exists.
[ -x .venv/bin/python ] && python_args=(-DPython3_EXECUTABLE="$PWD/.venv/bin/python")
cmake -S firmware/sim -B firmware/sim/build -DCMAKE_BUILD_TYPE=RelWithDebInfo "${python_args[@]}" >/dev/null
cmake --build firmware/sim/build -j"$(nproc)"
