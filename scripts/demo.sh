#!/usr/bin/env bash
# README Quick start, first command: installs what is needed, then runs the
# end-to-end walk-through on embedded defaults (SQLite, local files, the
# virtual ESP32-S3): layout → images → budget → signed releases →
# provisioning → controller → a device updating itself from v1 to v2.
# Arguments go to `csi-ota demo` (e.g. --out DIR, --no-device, --json).
# csi-ota runs from this checkout's .venv (scripts/setup.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
unset PYTHONPATH PYTHONHOME
./scripts/build_sim.sh >/dev/null
exec python -m csi_ota demo "$@"
