#!/usr/bin/env bash
# Builds the virtual ESP32-S3 (firmware/sim) and its C unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S firmware/sim -B firmware/sim/build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build firmware/sim/build -j"$(nproc)"
