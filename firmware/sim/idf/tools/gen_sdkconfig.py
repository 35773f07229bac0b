#!/usr/bin/env python3
"""Generate the virtual ESP32-S3's sdkconfig.h with esp-idf-kconfig (kconfgen).

Inputs: firmware/sim/idf/Kconfig (the ESP-IDF options the firmware reads, and the
firmware's own firmware/main/Kconfig.projbuild), then sdkconfig.defaults and the
variant's sdkconfig.ci.* as defaults files, exactly as idf.py layers them. Symbols of
ESP-IDF components the host layer does not model are reported by kconfgen ("unknown
kconfig symbol") and dropped.

The options a device takes from its build configuration and that tests vary per virtual
board (RUNTIME_OPTIONS) become run-time lookups: `CONFIG_X` expands to
`sim_sdkconfig_str("X", <Kconfig value>)` (or _int), which answers the value of the
board's --config file when it sets one (docs/sim.md) and the Kconfig value otherwise. One
build therefore stands for images built with different sdkconfig values, as a fleet of
boards flashed from one CI build with per-device sdkconfig.ci.* would be.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# Kconfig symbol -> kind; every one is read in C expressions only (never in #if).
RUNTIME_OPTIONS = {
    "CSI_OTA_WIFI_SSID": "str",
    "CSI_OTA_WIFI_PASSWORD": "str",
    "CSI_OTA_DEVICE_ID": "str",
    "CSI_OTA_VERSION_CHECK_URL": "str",
    "CSI_OTA_UPDATE_URL": "str",
    "CSI_OTA_AUTH_TOKEN": "str",
    "CSI_OTA_TRUSTED_KEYS": "str",
    "CSI_OTA_DATA_URL": "str",
    "CSI_OTA_MQTT_URI": "str",
    "CSI_OTA_CHECK_INTERVAL_SEC": "int",
    "CSI_OTA_AUTO_UPDATE": "bool",
    "CSI_OTA_HEARTBEAT_INTERVAL_SEC": "int",
    "CSI_OTA_SELFTEST_TIMEOUT_MS": "int",
    "CSI_OTA_RETRY_COUNT": "int",
    "CSI_OTA_HTTP_TIMEOUT_MS": "int",
    "CSI_OTA_BACKOFF_INITIAL_MS": "int",
    "CSI_OTA_BACKOFF_MAX_MS": "int",
    "CSI_OTA_DOWNLOAD_CHUNK_BYTES": "int",
    "CSI_OTA_PERSIST_INTERVAL_BYTES": "int",
}


def run_kconfgen(kconfig: Path, main_kconfig: Path, defaults: list[Path], out: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "kconfgen",
            "--kconfig",
            str(kconfig),
            "--env",
            f"CSI_OTA_MAIN_KCONFIG={main_kconfig}",
            "--config",
            str(Path(tmp) / "sdkconfig"),
            "--output",
            "header",
            str(out),
        ]
        for path in defaults:
            cmd += ["--defaults", str(path)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
            raise SystemExit(f"kconfgen failed ({result.returncode})")
        return result.stdout + result.stderr


def make_runtime(header: str) -> str:
    seen: set[str] = set()
    lines = []
    for line in header.splitlines():
        match = re.match(r"#define CONFIG_(\w+) (.*)$", line)
        if match and match.group(1) in RUNTIME_OPTIONS:
            name, value = match.group(1), match.group(2)
            kind = RUNTIME_OPTIONS[name]
            seen.add(name)
            fn = "sim_sdkconfig_str" if kind == "str" else "sim_sdkconfig_int"
            line = f'#define CONFIG_{name} {fn}("{name}", {value})'
        lines.append(line)
    # Bools that Kconfig left unset (n) are absent from sdkconfig.h; give them a run-time 0.
    for name, kind in RUNTIME_OPTIONS.items():
        if kind == "bool" and name not in seen:
            lines.append(f'#define CONFIG_{name} sim_sdkconfig_int("{name}", 0)')
    lines.insert(lines.index("#pragma once") + 1, '#include "sim_sdkconfig.h"')
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kconfig", type=Path, required=True)
    parser.add_argument("--main-kconfig", type=Path, required=True)
    parser.add_argument("--defaults", type=Path, action="append", default=[])
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    raw = args.output.with_suffix(".kconfgen.h")
    log = run_kconfgen(args.kconfig, args.main_kconfig, args.defaults, raw)
    for line in log.splitlines():
        if "unknown kconfig symbol" in line:
            print(f"gen_sdkconfig: not modelled on the virtual board: {line.split('NOTE: ')[-1]}")
    text = make_runtime(raw.read_text())
    raw.unlink()
    if not args.output.exists() or args.output.read_text() != text:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
