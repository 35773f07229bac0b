"""The `csi-ota` command line: thin click commands over csi_ota's library functions.

Each module in this package owns one command group and exposes ``COMMANDS``,
a list of click commands or groups. Library code raises
:class:`csi_ota.errors.CsiOtaError`; it is caught here, once, and printed
without a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click
from rich.markup import escape

from csi_ota import __version__
from csi_ota.cli.output import CliConsole
from csi_ota.errors import CsiOtaError

# (module, what it holds) — one module per command group.
COMMAND_MODULES = (
    "csi_ota.cli.partitions_cli",  # csi-ota partitions
    "csi_ota.cli.image_cli",  # csi-ota image info / image build, csi-ota budget
    "csi_ota.cli.doctor_cli",  # csi-ota doctor
    "csi_ota.cli.release_cli",  # csi-ota keys, csi-ota release
    "csi_ota.cli.provision_cli",  # csi-ota provision, csi-ota certs
    "csi_ota.cli.corrupt_cli",  # csi-ota corrupt
    "csi_ota.cli.sim_cli",  # csi-ota sim (virtual ESP32-S3 flash files)
    "csi_ota.cli.board_cli",  # csi-ota board serve (the virtual board on an RFC 2217 port)
    "csi_ota.cli.controller_cli",  # csi-ota serve, releases, admin, audit, mqtt-acl, openapi
    "csi_ota.cli.download_links_cli",  # csi-ota download-links (nginx offload with signed links)
    "csi_ota.cli.devices_cli",  # csi-ota devices
    "csi_ota.cli.rollout_cli",  # csi-ota rollout, csi-ota fleet
    "csi_ota.cli.remote_cli",  # csi-ota remote … (the controller-facing groups), releases alias
    "csi_ota.cli.demo_cli",  # csi-ota demo
)

err_console = CliConsole(stderr=True, highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="csi-ota")
def cli() -> None:
    """OTA updates for ESP32-S3 CSI sensor fleets.

    Local commands work on files on this machine (keys, release, image, budget, provision,
    certs, partitions, doctor, sim). `csi-ota remote …` (also devices, rollout, admin, audit)
    talks to a running controller: its management API at --server or CSI_OTA_SERVER
    (default http://127.0.0.1:8081) with an admin token from CSI_OTA_TOKEN or
    CSI_OTA_TOKEN_FILE (`csi-ota admin bootstrap` makes the first one).
    """


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # group not written yet on this branch
                continue
            raise
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    try:
        cli.main(args=argv, prog_name="csi-ota", standalone_mode=False)
    except CsiOtaError as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}")
        return exc.exit_code
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code  # 2 for usage errors
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


def run() -> None:  # pragma: no cover - used by `python -m csi_ota`
    sys.exit(main())
