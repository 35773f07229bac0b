#!/usr/bin/env bash
# fuzz.sh — libFuzzer targets for every parser of network (and flash) bytes in the device code
# (firmware/components/ota_core/fuzz: manifest, response-head lines, X-Device-Config and URLs,
# KV records, report ack / image header / versions, the ESP-IDF port's header helpers).
#
# Usage: scripts/fuzz.sh [SECONDS]     build, then fuzz each target SECONDS (default 15) from its
#                                      committed seed corpus; new inputs go to build/fuzz/work only
#        scripts/fuzz.sh --replay      build, then run each committed seed once (regression check)
# Needs clang with compiler-rt (apt: clang libclang-rt-14-dev). A crash leaves its input in
# build/fuzz/artifacts/ and fails the script; add that input to the target's corpus once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-15}
CORE=firmware/components/ota_core
FUZZ=$CORE/fuzz
PORT=firmware/components/ota_port_espidf
OUT=build/fuzz
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz.sh: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
mkdir -p "$OUT/artifacts"

CORE_SOURCES=$(sed -n '/^set(OTA_CORE_SOURCES/,/^)/p' "$CORE/CMakeLists.txt" | grep -o '[a-z_]*\.c' | sed "s|^|$CORE/|")
FLAGS=(-g -O1 -std=c11 -Wall -fsanitize=address,undefined -fno-sanitize-recover=undefined
       -I "$CORE/include" -I "$CORE" -I "$FUZZ" -I "$PORT")
TARGETS=(fuzz_manifest fuzz_http_head fuzz_device_config fuzz_kv_records fuzz_small_parsers
         fuzz_espidf_http_util)

# The core and the stub port once, then one link per target.
objects=()
for src in $CORE_SOURCES "$FUZZ/fuzz_port_stub.c" "$PORT/ota_port_espidf_http_util.c"; do
    obj=$OUT/obj/$(basename "${src%.c}").o
    mkdir -p "$OUT/obj"
    "$CC" "${FLAGS[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
    objects+=("$obj")
done
for target in "${TARGETS[@]}"; do
    "$CC" "${FLAGS[@]}" -fsanitize=fuzzer "$FUZZ/$target.c" "${objects[@]}" -o "$OUT/$target"
done
echo "fuzz.sh: built ${#TARGETS[@]} targets in $OUT"

for target in "${TARGETS[@]}"; do
    seeds=$FUZZ/corpus/$target
    [ -d "$seeds" ] || { echo "fuzz.sh: no seed corpus $seeds" >&2; exit 2; }
    if [ "$MODE" = "--replay" ]; then
        "$OUT/$target" -artifact_prefix="$OUT/artifacts/$target-" "$seeds"/* >"$OUT/$target.log" 2>&1 ||
            { tail -30 "$OUT/$target.log" >&2; echo "fuzz.sh: $target failed on a seed" >&2; exit 1; }
        echo "fuzz.sh: $target: $(find "$seeds" -type f | wc -l) seeds replayed clean"
    else
        work=$OUT/work/$target
        mkdir -p "$work"
        "$OUT/$target" -max_total_time="$MODE" -timeout=10 -rss_limit_mb=1024 -max_len=4096 \
            -artifact_prefix="$OUT/artifacts/$target-" "$work" "$seeds" >"$OUT/$target.log" 2>&1 ||
            { tail -40 "$OUT/$target.log" >&2; echo "fuzz.sh: $target found a crash (see $OUT/artifacts)" >&2; exit 1; }
        echo "fuzz.sh: $target: $(grep -o 'Done [0-9]* runs' "$OUT/$target.log" | tail -1) in ${MODE} s, clean"
    fi
done
