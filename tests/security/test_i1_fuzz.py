"""I1 — parsers of network bytes on the device are fuzzed, and what the fuzzer found stays fixed.

libFuzzer found a heap over-read in the virtual device's header callback: ``atoi(sp + 1)``
on a status line of only whitespace (libcurl's buffer is not NUL-terminated). Response-head
parsing now lives in the core (ota_http_head.c, bounded by length) and both ports use it.
scripts/fuzz.sh builds one target per parser (manifest, response-head lines, X-Device-Config
and URLs, KV records, report ack / image header / versions, the ESP-IDF port's header helpers)
with ASan + UBSan; scripts/test.sh fuzzes each for a bounded time. Here every committed seed —
the I1 inputs among them — is replayed under the sanitizers.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FUZZ = REPO / "firmware" / "components" / "ota_core" / "fuzz"

pytestmark = [pytest.mark.slow]


def test_every_network_parser_has_a_target_with_seeds() -> None:
    script = (REPO / "scripts" / "fuzz.sh").read_text()
    targets = re.search(r"TARGETS=\(([^)]*)\)", script).group(1).split()
    assert set(targets) >= {
        "fuzz_manifest",
        "fuzz_http_head",
        "fuzz_device_config",
        "fuzz_kv_records",
        "fuzz_small_parsers",
        "fuzz_espidf_http_util",
    }
    for target in targets:
        assert (FUZZ / f"{target}.c").is_file()
        assert any((FUZZ / "corpus" / target).iterdir()), f"{target} has no seed corpus"
    i1 = (FUZZ / "corpus" / "fuzz_http_head" / "i1_status_line_only_space").read_bytes()
    assert i1 == b"HTTP/1.1 "  # the crashing input: no status code, no NUL after it
    # The virtual ESP32-S3 has no HTTP parser of its own in the OTA path: firmware/sim/port is
    # gone, and the device's ESP-IDF port (fuzz_espidf_http_util) is what runs on the sim.
    assert not (REPO / "firmware" / "sim" / "port").exists()


def test_seed_corpora_replay_clean_under_asan_and_ubsan() -> None:
    result = subprocess.run(
        [str(REPO / "scripts" / "fuzz.sh"), "--replay"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("replayed clean") == 6, result.stdout
