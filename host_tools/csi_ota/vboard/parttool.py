"""Print a binary partition table as ESP-IDF's gen_esp32part.py does (its CSV output).

pytest-embedded-idf runs ``python PART_TOOL partition-table.bin`` to learn the partitions
(``--part-tool``; default ``$IDF_PATH/components/partition_table/gen_esp32part.py``). This
file stands in for it where no ESP-IDF is installed; tests_hw's conftest points
``--part-tool`` here when ``IDF_PATH`` is unset. It only *reads* tables, with
csi_ota.partitions (which checks the MD5 entry and every entry's magic).

    python host_tools/csi_ota/vboard/parttool.py firmware/build_v1/partition_table/partition-table.bin
"""

from __future__ import annotations

import sys
from pathlib import Path


def render(table: bytes) -> str:
    from csi_ota.partitions.binary import parse_binary

    layout = parse_binary(table)
    lines = ["# ESP-IDF Partition Table", "# Name, Type, SubType, Offset, Size, Flags"]
    for entry in layout.entries:
        size = f"{entry.size // 1024}K" if entry.size % 1024 == 0 else str(entry.size)
        flags = ":".join(entry.flag_names)
        lines.append(f"{entry.name},{entry.type_name},{entry.subtype_name},{entry.offset:#x},{size},{flags}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: parttool.py PARTITION_TABLE.bin", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # host_tools/, run as a script
    try:
        sys.stdout.write(render(Path(argv[0]).read_bytes()))
    except Exception as exc:  # noqa: BLE001 - a command-line tool: one line, exit 2
        print(f"parttool.py: {argv[0]}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
