"""`csi-ota remote …`: every command that talks to a running controller, in one group.

Local commands work on files (`csi-ota release create` signs an image on this machine);
remote ones go to the controller's management API at --server / CSI_OTA_SERVER with an
admin token (`csi-ota remote releases upload` stores a release there). The remote groups
also stay at the top level under their old names (`csi-ota releases`, `csi-ota devices`,
…) so existing scripts keep working; `releases` is hidden there so that `release` (local)
and `releases` (remote) no longer sit side by side in --help.
"""

from __future__ import annotations

import click

from csi_ota.cli.controller_cli import admin_group, audit_group, releases_group
from csi_ota.cli.devices_cli import devices_group
from csi_ota.cli.rollout_cli import rollout_group


@click.group("remote")
def remote_group() -> None:
    """Drive a running controller: releases, devices, rollouts, admins, audit (--server / CSI_OTA_SERVER)."""


for _group in (releases_group, devices_group, rollout_group, admin_group, audit_group):
    remote_group.add_command(_group)

# The old top-level name of `remote releases`: same commands, hidden from `csi-ota --help`.
releases_alias = click.Group(
    "releases",
    commands=releases_group.commands,
    hidden=True,
    help="Alias of `csi-ota remote releases`: " + (releases_group.help or ""),
)

COMMANDS = [remote_group, releases_alias]
