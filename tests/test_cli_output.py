"""Local commands' tables when piped or captured: whole values, never cut with an ellipsis."""

from __future__ import annotations

import io
from pathlib import Path

from click.testing import CliRunner
from rich.table import Table

from csi_ota.cli import main
from csi_ota.cli.output import NON_TTY_WIDTH, CliConsole

LONG_URL = "https://ota-controller.fleet-site-number-042.example.internal:8080/api/ota/version?" + "x" * 120


def run_cli(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    runner = CliRunner(env=env)
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_provision_show_prints_the_whole_url_on_one_line_when_piped(tmp_path: Path):
    nvs = tmp_path / "nvs.bin"
    code, _, err = run_cli(
        "provision",
        "--device-id",
        "csi_sensor_001",
        "--auth-token",
        "dev_0123456789abcdef0123456789abcdef",
        "--update-url",
        "https://ota.example:8080/firmware/latest",
        "--version-check-url",
        LONG_URL,
        "--out",
        nvs,
    )
    assert code == 0, err
    # COLUMNS describes a terminal; none is attached here, so it must not cut the table.
    code, out, err = run_cli("provision", "show", nvs, env={"COLUMNS": "80"})
    assert code == 0, err
    assert "…" not in out
    assert any(LONG_URL in line for line in out.splitlines())


def test_console_folds_cells_on_a_terminal_instead_of_cutting_them():
    terminal = io.StringIO()
    console = CliConsole(file=terminal, force_terminal=True, width=40, highlight=False, color_system=None)
    table = Table("key", "value")
    table.add_row("sha256", "ab" * 32)
    console.print(table)
    text = terminal.getvalue()
    assert "…" not in text
    assert (
        "".join(line.split("│")[2].strip() for line in text.splitlines() if line.count("│") == 3) == "ab" * 32
    )
    piped = CliConsole(file=io.StringIO(), highlight=False)
    assert piped.width == NON_TTY_WIDTH
