#!/usr/bin/env bash
# Runs the hardware-in-the-loop suite (tests_hw) against the virtual ESP32-S3 — no board needed.
#
#   scripts/test_hw_sim.sh [extra pytest args]     e.g. -k s8   or   --sweep-workers 1
#
# Builds the simulator first (scripts/build_sim.sh, only when stale), then runs
# `pytest tests_hw --target sim`: scenarios 1-9, the power-cut sweep and the suite's own checks.
# Results: out/tests_hw.junit.xml (one <testcase> per scenario, by name), DUT logs under
# out/tests_hw-logs/, and a table of every scenario and its outcome at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out

python3 -c 'from csi_ota.sim.runner import build_sim; print("simulator:", build_sim())'

rc=0
python3 -m pytest tests_hw --target sim \
  --junitxml=out/tests_hw.junit.xml -o junit_suite_name=tests_hw -o junit_family=xunit1 \
  --root-logdir=out/tests_hw-logs -p no:cacheprovider "$@" || rc=$?

python3 - <<'PY'
import xml.etree.ElementTree as ET
from pathlib import Path

junit = Path("out/tests_hw.junit.xml")
if junit.is_file():
    cases = ET.parse(junit).getroot().iter("testcase")
    print(f"\n{'scenario':78} result")
    for case in cases:
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag]
        print(f"{case.get('name'):78} {outcome}")
    print(f"junit: {junit}")
PY
exit "$rc"
