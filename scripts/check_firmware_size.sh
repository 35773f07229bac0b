#!/usr/bin/env bash
# Checks a built firmware image against the OTA size budget (the seed's
# ./check_firmware_size.sh): the app .bin against the smallest OTA slot of the
# partition table the build used, with the per-component breakdown from the
# linker map. Exit 0 = fits (warnings allowed), 1 = over budget, 2 = bad input.
#
# Usage: scripts/check_firmware_size.sh [BUILD_DIR] [csi-ota budget options...]
#   BUILD_DIR   an `idf.py -C firmware build` output directory (default firmware/build)
#   options     passed on, e.g. --json, --warn-percent 85, --ceiling-bytes 1100000,
#               --secure-boot-v2
# Environment: CSI_OTA_BUDGET_CEILING_BYTES / CSI_OTA_BUDGET_WARN_PERCENT set the
# per-project ceiling and the warning level (same as the options).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

build_dir="$repo/firmware/build"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  build_dir="$1"
  shift
fi
if [ ! -d "$build_dir" ]; then
  echo "check_firmware_size.sh: build directory $build_dir does not exist; run: idf.py -C firmware build" >&2
  exit 2
fi

# The app binary: project_description.json names it; csi_sensor.bin otherwise.
app_bin=""
if [ -f "$build_dir/project_description.json" ]; then
  app_bin="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("app_bin", ""))' \
    "$build_dir/project_description.json")"
fi
[ -n "$app_bin" ] || app_bin="csi_sensor.bin"
case "$app_bin" in /*) ;; *) app_bin="$build_dir/$app_bin" ;; esac
if [ ! -f "$app_bin" ]; then
  echo "check_firmware_size.sh: no app image at $app_bin; run: idf.py -C firmware build" >&2
  exit 2
fi

args=(budget "$app_bin")
if [ -f "$build_dir/partition_table/partition-table.bin" ]; then
  args+=(--partitions "$build_dir/partition_table/partition-table.bin")
else
  args+=(--partitions "$repo/firmware/partitions.csv")
fi
map_file="${app_bin%.bin}.map"
[ -f "$map_file" ] && args+=(--map "$map_file")

# This checkout's csi-ota (the .venv scripts/setup.sh makes), else whatever is installed.
if [ -x "$repo/.venv/bin/csi-ota" ]; then
  exec "$repo/.venv/bin/csi-ota" "${args[@]}" "$@"
fi
if command -v csi-ota >/dev/null 2>&1; then
  exec csi-ota "${args[@]}" "$@"
fi
exec python3 -m csi_ota "${args[@]}" "$@"
