"""`csi-ota devices …`: the device registry of a running controller (management API)."""

from __future__ import annotations

from typing import Any

import click

from csi_ota.cli.management_common import (
    config_pairs,
    console,
    err_console,
    json_option,
    kv_table,
    management_client,
    page_hint,
    print_json,
    rows_table,
    server_option,
    token_option,
)
from csi_ota.errors import CsiOtaError


@click.group("devices")
def devices_group() -> None:
    """The device registry on a running controller."""


@devices_group.command("register")
@click.argument("device_id")
@click.option("--tag", "tags", multiple=True, help="Tag (repeatable).")
@server_option
@token_option
@json_option
def devices_register(
    device_id: str, tags: tuple[str, ...], server: str, token: str | None, as_json: bool
) -> None:
    """Register DEVICE_ID; prints its token — shown only this once."""
    with management_client(server, token) as client:
        result = client.post("/api/devices", {"device_id": device_id, "tags": list(tags)})
    if as_json:
        print_json(result)
        return
    console.print(f"registered {result['device_id']}")
    console.print(f"device token (shown once, store it in the provisioning image): {result['token']}")


@devices_group.command("list")
@click.option("--tag")
@click.option("--version")
@click.option("--health", type=click.Choice(["unknown", "healthy", "degraded", "offline"]))
@click.option("--seen-within", "seen_within_s", type=click.IntRange(0), help="Seen in the last N seconds.")
@click.option(
    "--not-seen-within", "not_seen_within_s", type=click.IntRange(0), help="Not seen for N seconds."
)
@click.option("--all", "include_decommissioned", is_flag=True, help="Include decommissioned devices.")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True, help="Devices per page."
)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Devices to skip.")
@server_option
@token_option
@json_option
def devices_list(server: str, token: str | None, as_json: bool, **filters: Any) -> None:
    """Devices matching every filter, by id (a page of --limit from --offset; a hint says if more match)."""
    filters["include_decommissioned"] = filters["include_decommissioned"] or None
    with management_client(server, token) as client:
        rows, total = client.get_page("/api/devices", **filters)
    hint = page_hint(len(rows), total, filters["offset"], filters["limit"], "devices")
    if as_json:
        print_json(rows)
    else:
        columns = [
            "device_id",
            "tags",
            "version",
            "health",
            "last_seen",
            "last_ota_state",
            "assigned_version",
        ]
        title = f"{len(rows)} devices" if total is None or hint is None else f"{len(rows)} of {total} devices"
        console.print(rows_table(title, rows, columns))
    if hint:
        err_console.print(hint)


@devices_group.command("show")
@click.argument("device_id")
@server_option
@token_option
@json_option
def devices_show(device_id: str, server: str, token: str | None, as_json: bool) -> None:
    """Everything the registry knows about DEVICE_ID (health, OTA state, CSI counts, config)."""
    with management_client(server, token) as client:
        device = client.get(f"/api/devices/{device_id}")
    if as_json:
        print_json(device)
    else:
        console.print(kv_table(device_id, device))


@devices_group.command("reports")
@click.argument("device_id")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@server_option
@token_option
@json_option
def devices_reports(device_id: str, limit: int, server: str, token: str | None, as_json: bool) -> None:
    """DEVICE_ID's latest OTA status reports."""
    with management_client(server, token) as client:
        rows = client.get(f"/api/devices/{device_id}/reports", limit=limit)
    if as_json:
        print_json(rows)
        return
    columns = ["seq", "state", "reason", "version", "target_version", "received_at"]
    console.print(rows_table(f"{device_id}: status reports", rows, columns))


@devices_group.command("tag")
@click.argument("device_id")
@click.option("--add", multiple=True, help="Tag to add (repeatable).")
@click.option("--remove", multiple=True, help="Tag to remove (repeatable).")
@server_option
@token_option
@json_option
def devices_tag(
    device_id: str,
    add: tuple[str, ...],
    remove: tuple[str, ...],
    server: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Add or remove tags."""
    if not add and not remove:
        raise CsiOtaError("give --add and/or --remove")
    with management_client(server, token) as client:
        result = client.post(f"/api/devices/{device_id}/tags", {"add": list(add), "remove": list(remove)})
    print_json(result) if as_json else console.print(
        f"{device_id}: tags {', '.join(result['tags']) or '(none)'}"
    )


@devices_group.command("rotate-token")
@click.argument("device_id")
@server_option
@token_option
@json_option
def devices_rotate(device_id: str, server: str, token: str | None, as_json: bool) -> None:
    """Issue a new token for DEVICE_ID (shown once); the old one stops working."""
    with management_client(server, token) as client:
        result = client.post(f"/api/devices/{device_id}/token/rotate")
    print_json(result) if as_json else console.print(f"new device token (shown once): {result['token']}")


@devices_group.command("revoke")
@click.argument("device_id")
@server_option
@token_option
def devices_revoke(device_id: str, server: str, token: str | None) -> None:
    """Revoke DEVICE_ID's token (it gets 401 until rotated)."""
    with management_client(server, token) as client:
        client.post(f"/api/devices/{device_id}/token/revoke")
    console.print(f"{device_id}: token revoked")


@devices_group.command("decommission")
@click.argument("device_id")
@server_option
@token_option
def devices_decommission(device_id: str, server: str, token: str | None) -> None:
    """Retire DEVICE_ID for good (token revoked, assignment cleared, history kept)."""
    with management_client(server, token) as client:
        client.post(f"/api/devices/{device_id}/decommission")
    console.print(f"{device_id}: decommissioned")


@devices_group.command("config")
@click.argument("device_id", required=False)
@click.option("--tag", help="Set the configuration of every device with this tag instead.")
@click.option(
    "--set",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="check_interval_sec, auto_update_enabled, update_url, version_check_url.",
)
@click.option("--clear", is_flag=True, help="Remove the configuration.")
@server_option
@token_option
@json_option
def devices_config(
    device_id: str | None,
    tag: str | None,
    pairs: tuple[str, ...],
    clear: bool,
    server: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Push configuration with the version check (per device, or per tag with --tag)."""
    if (device_id is None) == (tag is None):
        raise CsiOtaError("give a DEVICE_ID or --tag, not both")
    if clear == bool(pairs):
        raise CsiOtaError("give --set KEY=VALUE (repeatable) or --clear")
    config = None if clear else config_pairs(pairs)
    path = f"/api/tags/{tag}/config" if tag else f"/api/devices/{device_id}/config"
    with management_client(server, token) as client:
        result = client.put(path, {"config": config})
    print_json(result) if as_json else console.print(f"{tag or device_id}: config {result.get('config')}")


@devices_group.command("assign")
@click.argument("device_id")
@click.argument("release")
@server_option
@token_option
@json_option
def devices_assign(device_id: str, release: str, server: str, token: str | None, as_json: bool) -> None:
    """Offer RELEASE (id or version; 'none' clears) to DEVICE_ID at its next version check."""
    body = {"release": None if release == "none" else release}
    with management_client(server, token) as client:
        result = client.put(f"/api/devices/{device_id}/assignment", body)
    print_json(result) if as_json else console.print(
        f"{device_id}: assigned {result['assigned_version'] or 'nothing'}"
    )


@devices_group.command("batch")
@click.argument("action", type=click.Choice(["assign", "config", "revoke"]))
@click.option("--device", "device_ids", multiple=True, help="Device id (repeatable).")
@click.option("--tag")
@click.option("--version")
@click.option("--health", type=click.Choice(["unknown", "healthy", "degraded", "offline"]))
@click.option("--release", help="For assign: release id or version ('none' clears).")
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE", help="For config.")
@server_option
@token_option
@json_option
def devices_batch(
    action: str,
    device_ids: tuple[str, ...],
    tag: str | None,
    version: str | None,
    health: str | None,
    release: str | None,
    pairs: tuple[str, ...],
    server: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Apply ACTION to every selected device in one transaction."""
    selection = {"device_ids": list(device_ids) or None, "tag": tag, "version": version, "health": health}
    body: dict[str, Any] = {
        "selection": {k: v for k, v in selection.items() if v is not None},
        "action": action,
    }
    if action == "assign":
        if release is None:
            raise CsiOtaError("assign needs --release")
        body["release"] = None if release == "none" else release
    if action == "config":
        body["config"] = config_pairs(pairs) or None
    with management_client(server, token) as client:
        result = client.post("/api/batch", body)
    print_json(result) if as_json else console.print(f"{action}: {result['matched']} devices")


COMMANDS = [devices_group]
