"""Partition layouts for the CSI sensor: specs, ESP-IDF's rules, CSV and the binary table.

Public API (other modules code against these names):
``load_layout``, ``default_layout``, ``parse_binary``, ``parse_csv``, ``load_table``,
``Layout`` (``.entries``, ``.ota_slots()``, ``.find(name)``, ``.to_csv()``,
``.to_binary()``, ``.validate()``) and ``PartitionEntry``.
"""

from __future__ import annotations

from csi_ota.partitions.binary import parse_binary, render_binary
from csi_ota.partitions.csvfmt import parse_csv, render_csv
from csi_ota.partitions.model import Layout, PartitionEntry, flash_size_label, parse_flash_size
from csi_ota.partitions.rules import RULES, Violation, find_violations, validate_layout
from csi_ota.partitions.spec import (
    SHIPPED_LAYOUTS,
    default_layout,
    layout_from_spec,
    load_layout,
    load_spec,
    load_table,
    shipped_spec_path,
)

__all__ = [
    "RULES",
    "SHIPPED_LAYOUTS",
    "Layout",
    "PartitionEntry",
    "Violation",
    "default_layout",
    "find_violations",
    "flash_size_label",
    "layout_from_spec",
    "load_layout",
    "load_spec",
    "load_table",
    "parse_binary",
    "parse_csv",
    "parse_flash_size",
    "render_binary",
    "render_csv",
    "shipped_spec_path",
    "validate_layout",
]
