#!/usr/bin/env bash
# Builds the four ESP32-S3 images the hardware-in-the-loop suite (tests_hw) needs, from firmware/:
#
#   v1                 firmware/version.txt's version, test hooks on       -> firmware/build_v1
#   v2                 next major version, test hooks on                   -> firmware/build_v2
#   v2_fail_selftest   next major version, fails its post-update self-test -> firmware/build_v2_fail_selftest
#   v2_crash_at_boot   next major version, crashes before marking valid    -> firmware/build_v2_crash_at_boot
#
# Each variant gets its own build directory AND its own sdkconfig (-D SDKCONFIG=…): without
# that, ESP-IDF keeps one firmware/sdkconfig for every build, and SDKCONFIG_DEFAULTS only seeds
# options that file does not already have — the variants would silently share one config.
# SDKCONFIG_DEFAULTS lists sdkconfig.defaults explicitly (a custom list replaces the default
# file) and resolves relative names against the project directory (firmware/); ESP-IDF also
# loads each listed file's ".esp32s3" variant when it exists. The version is passed as
# PROJECT_VER, which ESP-IDF prefers over version.txt when it is defined.
#
# Without ESP-IDF (no idf.py on PATH), or with --virtual, each variant's build directory is
# written for the virtual ESP32-S3 board instead (`csi-ota board build-dir`, docs/vboard.md):
# the same layout as idf.py's — flasher_args.json, project_description.json,
# config/sdkconfig.json, bootloader/bootloader.bin, partition_table/partition-table.bin,
# ota_data_initial.bin, csi_sensor.bin — with a csi_ota.imagegen app image the virtual chip
# runs, plus config/csi-ota-sim.conf (the app's Kconfig settings, trusted keys included).
#
# Usage: scripts/build_test_images.sh [--dry-run] [--virtual] [VARIANT ...]
#   --dry-run   print the idf.py command lines, run nothing (no ESP-IDF needed)
#   --virtual   build for the virtual board even when ESP-IDF is installed
#   VARIANT     any of: v1 v2 v2_fail_selftest v2_crash_at_boot (default: all four)
# Environment:
#   CSI_OTA_V2_VERSION       the v2 version (default: MAJOR+1.0.0 of version.txt)
#   CSI_OTA_EXTRA_SDKCONFIG  one more defaults file, applied last to every variant — the rig's
#                            CONFIG_CSI_OTA_TRUSTED_KEYS line (`csi-ota keys show-public KEY
#                            --format kconfig`), never committed; absolute or relative to firmware/
# Needs an ESP-IDF v6 environment (. $IDF_PATH/export.sh) unless --dry-run.
set -euo pipefail
cd "$(dirname "$0")/../firmware"

ALL_VARIANTS=(v1 v2 v2_fail_selftest v2_crash_at_boot)
dry_run=0
virtual=0
variants=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    --virtual) virtual=1 ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    v1|v2|v2_fail_selftest|v2_crash_at_boot) variants+=("$arg") ;;
    *) echo "build_test_images.sh: unknown argument '$arg' (variants: ${ALL_VARIANTS[*]})" >&2; exit 2 ;;
  esac
done
[ ${#variants[@]} -gt 0 ] || variants=("${ALL_VARIANTS[@]}")

if [ ! -f version.txt ]; then
  echo "build_test_images.sh: firmware/version.txt is missing" >&2
  exit 2
fi
v1_version=$(head -n 1 version.txt | tr -d '[:space:]')
if ! [[ "$v1_version" =~ ^([0-9]+)\.[0-9]+\.[0-9]+$ ]]; then
  echo "build_test_images.sh: firmware/version.txt must hold MAJOR.MINOR.PATCH, got '$v1_version'" >&2
  exit 2
fi
v2_version=${CSI_OTA_V2_VERSION:-$((BASH_REMATCH[1] + 1)).0.0}

if [ -n "${CSI_OTA_EXTRA_SDKCONFIG:-}" ] && [ ! -f "$CSI_OTA_EXTRA_SDKCONFIG" ]; then
  echo "build_test_images.sh: CSI_OTA_EXTRA_SDKCONFIG=$CSI_OTA_EXTRA_SDKCONFIG does not exist" >&2
  exit 2
fi
if [ "$dry_run" -eq 0 ] && [ "$virtual" -eq 0 ] && ! command -v idf.py >/dev/null; then
  echo "build_test_images.sh: idf.py not found: writing build directories for the virtual ESP32-S3 board" >&2
  echo "  (for a USB board, source ESP-IDF's export.sh first)" >&2
  virtual=1
fi
if [ "$virtual" -eq 1 ] && [ "$dry_run" -eq 0 ]; then
  csi_ota=(python3 -m csi_ota)
  if [ -d ../host_tools/csi_ota ]; then
    export PYTHONPATH="$(cd ../host_tools && pwd)${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi

for variant in "${variants[@]}"; do
  if [ ! -f "sdkconfig.ci.$variant" ]; then
    echo "build_test_images.sh: firmware/sdkconfig.ci.$variant is missing" >&2
    exit 2
  fi
  defaults="sdkconfig.defaults;sdkconfig.ci.$variant"
  if [ -n "${CSI_OTA_EXTRA_SDKCONFIG:-}" ]; then
    defaults="$defaults;$CSI_OTA_EXTRA_SDKCONFIG"
  fi
  version=$v2_version
  [ "$variant" = v1 ] && version=$v1_version
  if [ "$virtual" -eq 1 ] && [ "$dry_run" -eq 0 ]; then
    base_defaults=sdkconfig.defaults
    [ -f "$base_defaults" ] || base_defaults=../sdkconfig.defaults
    sdkconfigs=(--sdkconfig "$base_defaults" --sdkconfig "sdkconfig.ci.$variant")
    [ -n "${CSI_OTA_EXTRA_SDKCONFIG:-}" ] && sdkconfigs+=(--sdkconfig "$CSI_OTA_EXTRA_SDKCONFIG")
    "${csi_ota[@]}" board build-dir "build_$variant" --variant "$variant" --version "$version" \
      "${sdkconfigs[@]}" --partitions partitions.csv
    continue
  fi
  cmd=(idf.py -B "build_$variant"
       -D "IDF_TARGET=esp32s3"
       -D "SDKCONFIG=build_$variant/sdkconfig"
       -D "SDKCONFIG_DEFAULTS=$defaults"
       -D "PROJECT_VER=$version"
       build)
  echo "(cd firmware && ${cmd[*]})"
  if [ "$dry_run" -eq 0 ]; then
    "${cmd[@]}"
  fi
done
