"""`csi-ota download-links`: the secret and the nginx configuration of the signed-link offload.

`csi-ota serve --signed-download-links SECRET_FILE` offers firmware as links nginx checks
itself (csi_ota.controller.download_links); these commands make the secret and print the
nginx configuration that goes with it.
"""

from __future__ import annotations

from pathlib import Path

import click

from csi_ota.cli.management_common import EXISTING_FILE
from csi_ota.controller import download_links


@click.group("download-links")
def download_links_group() -> None:
    """nginx serves firmware from signed links (serve --signed-download-links)."""


@download_links_group.command("new-secret")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def new_secret_command(path: Path) -> None:
    """Write a fresh 256-bit link secret to PATH (mode 0600; never overwrites)."""
    download_links.new_secret(path)
    click.echo(f"wrote {path}")


@download_links_group.command("nginx-config")
@click.option("--secret-file", type=EXISTING_FILE, required=True, help="The secret serve was given.")
@click.option(
    "--firmware-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The controller's FIRMWARE_STORAGE_PATH (nginx reads <sha256>.bin there).",
)
@click.option(
    "--controller",
    default="127.0.0.1:8080",
    show_default=True,
    help="host:port of `csi-ota serve --insecure-http` behind nginx.",
)
@click.option(
    "--downloads-per-device",
    type=click.IntRange(1, 1000),
    default=4,
    show_default=True,
    help="Concurrent link downloads per device (more: 429).",
)
def nginx_config_command(
    secret_file: Path, firmware_dir: Path, controller: str, downloads_per_device: int
) -> None:
    """Print the nginx http-level and server-level configuration of the offload."""
    secret = download_links.load_secret(secret_file)
    http, server = download_links.nginx_config(
        secret, firmware_dir, controller, downloads_per_device=downloads_per_device
    )
    click.echo("# --- in the http { } block")
    click.echo(http.strip())
    click.echo("\n# --- in the server { } block (after its listen / ssl lines)")
    click.echo(server.strip())


COMMANDS = [download_links_group]
