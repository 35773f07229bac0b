"""`csi-ota serve` and the commands that drive a running controller.

`serve` runs the service; `devices`, `releases`, `admin`, `audit` and
`mqtt-acl` talk to its management API (``--server``/CSI_OTA_SERVER,
``--token``/CSI_OTA_TOKEN); `admin bootstrap` writes the first admin token
straight into the registry; `openapi` prints the API description.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from csi_ota.controller.client import DEFAULT_SERVER, ManagementClient
from csi_ota.errors import CsiOtaError

console = Console(highlight=False)
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)

server_option = click.option(
    "--server", envvar="CSI_OTA_SERVER", default=DEFAULT_SERVER, show_default=True, help="Management API URL."
)
token_option = click.option("--token", envvar="CSI_OTA_TOKEN", help="Admin token (or CSI_OTA_TOKEN).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _client(server: str, token: str | None) -> ManagementClient:
    return ManagementClient(server, token)


def _print_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2))


def _kv_table(title: str, data: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    return table


def _rows_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, no_wrap=index == 0)
    for row in rows:
        table.add_row(
            *[
                ", ".join(v) if isinstance(v := row.get(c), list) else ("" if v is None else str(v))
                for c in columns
            ]
        )
    return table


def _config_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CsiOtaError(f"--set {pair!r}: use KEY=VALUE")
        config[key] = value
    return config


# --------------------------------------------------------------------------- serve


@click.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address both ports bind (0.0.0.0 in Docker)."
)
@click.option("--device-port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--management-port", type=click.IntRange(1, 65535), default=8081, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CSI_OTA_DATA_DIR",
    default=Path("ota-data"),
    show_default=True,
    help="SQLite registry, default firmware store and CSI files.",
)
@click.option(
    "--tls-cert", type=EXISTING_FILE, help="Server certificate for the device port (csi-ota certs)."
)
@click.option("--tls-key", type=EXISTING_FILE, help="Its private key.")
@click.option(
    "--insecure-http", is_flag=True, help="Serve the device port over plain HTTP (tests, behind a TLS proxy)."
)
@click.option(
    "--trusted-key",
    "trusted_keys",
    multiple=True,
    type=EXISTING_FILE,
    help="Release public key (repeatable); also TRUSTED_KEYS_DIR.",
)
@click.option("--mqtt-host", help="Mosquitto broker to subscribe to (csi/+/data, stats, heartbeat).")
@click.option("--mqtt-port", type=click.IntRange(1, 65535), default=1883, show_default=True)
@click.option("--mqtt-username", envvar="MQTT_USERNAME", help="Broker user (see csi-ota mqtt-acl).")
@click.option(
    "--mqtt-password-file", type=EXISTING_FILE, help="File holding the broker password (or MQTT_PASSWORD)."
)
@click.option(
    "--device-rate",
    type=click.FloatRange(0),
    default=20.0,
    show_default=True,
    help="Requests/s per device (0 = off).",
)
@click.option("--device-burst", type=click.IntRange(1), default=60, show_default=True)
@click.option(
    "--x-accel-redirect",
    "accel_redirect_prefix",
    metavar="PREFIX",
    help="Let nginx in front send firmware: answer downloads with X-Accel-Redirect: PREFIX<sha256>.bin.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
def serve_command(
    host: str,
    device_port: int,
    management_port: int,
    data_dir: Path,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure_http: bool,
    trusted_keys: tuple[Path, ...],
    mqtt_host: str | None,
    mqtt_port: int,
    mqtt_username: str | None,
    mqtt_password_file: Path | None,
    device_rate: float,
    device_burst: int,
    accel_redirect_prefix: str | None,
    log_level: str,
) -> None:
    """Run the OTA controller: device API (8080) and management API (8081).

    Configuration comes from FIRMWARE_STORAGE_PATH, DEVICE_REGISTRY_DB, UPDATE_STRATEGY,
    FIRMWARE_MAX_SIZE, DEVICE_UPDATE_BATCH_SIZE, ROLLBACK_TIMEOUT_MIN, UPDATE_RETRY_COUNT,
    HEALTH_CHECK_INTERVAL_SEC and TRUSTED_KEYS_DIR (see docs/controller.md).
    """
    from csi_ota.controller.server import ListenOptions, MqttOptions, check_listen_options, serve
    from csi_ota.controller.settings import settings_from_env

    settings = settings_from_env(
        data_dir,
        trusted_key_paths=trusted_keys,
        device_rate_per_s=device_rate,
        device_rate_burst=device_burst,
        accel_redirect_prefix=accel_redirect_prefix,
    )
    listen = ListenOptions(host, device_port, management_port, tls_cert, tls_key, insecure_http, log_level)
    check_listen_options(listen)
    mqtt = None
    if mqtt_host:
        password = os.environ.get("MQTT_PASSWORD")
        if mqtt_password_file is not None:
            password = mqtt_password_file.read_text().strip()
        mqtt = MqttOptions(mqtt_host, mqtt_port, mqtt_username, password)
    serve(settings, listen, mqtt)


# --------------------------------------------------------------------------- devices


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
    with _client(server, token) as client:
        result = client.post("/api/devices", {"device_id": device_id, "tags": list(tags)})
    if as_json:
        _print_json(result)
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
@click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@server_option
@token_option
@json_option
def devices_list(server: str, token: str | None, as_json: bool, **filters: Any) -> None:
    """Devices matching every filter."""
    filters["include_decommissioned"] = filters["include_decommissioned"] or None
    with _client(server, token) as client:
        rows = client.get("/api/devices", **filters)
    if as_json:
        _print_json(rows)
        return
    columns = ["device_id", "tags", "version", "health", "last_seen", "last_ota_state", "assigned_version"]
    console.print(_rows_table(f"{len(rows)} devices", rows, columns))


@devices_group.command("show")
@click.argument("device_id")
@server_option
@token_option
@json_option
def devices_show(device_id: str, server: str, token: str | None, as_json: bool) -> None:
    """Everything the registry knows about DEVICE_ID (health, OTA state, CSI counts, config)."""
    with _client(server, token) as client:
        device = client.get(f"/api/devices/{device_id}")
    if as_json:
        _print_json(device)
    else:
        console.print(_kv_table(device_id, device))


@devices_group.command("reports")
@click.argument("device_id")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@server_option
@token_option
@json_option
def devices_reports(device_id: str, limit: int, server: str, token: str | None, as_json: bool) -> None:
    """DEVICE_ID's latest OTA status reports."""
    with _client(server, token) as client:
        rows = client.get(f"/api/devices/{device_id}/reports", limit=limit)
    if as_json:
        _print_json(rows)
        return
    columns = ["seq", "state", "reason", "version", "target_version", "received_at"]
    console.print(_rows_table(f"{device_id}: status reports", rows, columns))


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
    with _client(server, token) as client:
        result = client.post(f"/api/devices/{device_id}/tags", {"add": list(add), "remove": list(remove)})
    _print_json(result) if as_json else console.print(
        f"{device_id}: tags {', '.join(result['tags']) or '(none)'}"
    )


@devices_group.command("rotate-token")
@click.argument("device_id")
@server_option
@token_option
@json_option
def devices_rotate(device_id: str, server: str, token: str | None, as_json: bool) -> None:
    """Issue a new token for DEVICE_ID (shown once); the old one stops working."""
    with _client(server, token) as client:
        result = client.post(f"/api/devices/{device_id}/token/rotate")
    _print_json(result) if as_json else console.print(f"new device token (shown once): {result['token']}")


@devices_group.command("revoke")
@click.argument("device_id")
@server_option
@token_option
def devices_revoke(device_id: str, server: str, token: str | None) -> None:
    """Revoke DEVICE_ID's token (it gets 401 until rotated)."""
    with _client(server, token) as client:
        client.post(f"/api/devices/{device_id}/token/revoke")
    console.print(f"{device_id}: token revoked")


@devices_group.command("decommission")
@click.argument("device_id")
@server_option
@token_option
def devices_decommission(device_id: str, server: str, token: str | None) -> None:
    """Retire DEVICE_ID for good (token revoked, assignment cleared, history kept)."""
    with _client(server, token) as client:
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
    config = None if clear else _config_pairs(pairs)
    path = f"/api/tags/{tag}/config" if tag else f"/api/devices/{device_id}/config"
    with _client(server, token) as client:
        result = client.put(path, {"config": config})
    _print_json(result) if as_json else console.print(f"{tag or device_id}: config {result.get('config')}")


@devices_group.command("assign")
@click.argument("device_id")
@click.argument("release")
@server_option
@token_option
@json_option
def devices_assign(device_id: str, release: str, server: str, token: str | None, as_json: bool) -> None:
    """Offer RELEASE (id or version; 'none' clears) to DEVICE_ID at its next version check."""
    body = {"release": None if release == "none" else release}
    with _client(server, token) as client:
        result = client.put(f"/api/devices/{device_id}/assignment", body)
    _print_json(result) if as_json else console.print(
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
        body["config"] = _config_pairs(pairs) or None
    with _client(server, token) as client:
        result = client.post("/api/batch", body)
    _print_json(result) if as_json else console.print(f"{action}: {result['matched']} devices")


# --------------------------------------------------------------------------- releases


@click.group("releases")
def releases_group() -> None:
    """Releases stored on a running controller."""


@releases_group.command("upload")
@click.argument("image", type=EXISTING_FILE)
@click.argument("manifest", type=EXISTING_FILE)
@server_option
@token_option
@json_option
def releases_upload(image: Path, manifest: Path, server: str, token: str | None, as_json: bool) -> None:
    """Upload IMAGE with its signed MANIFEST (from `csi-ota release create`)."""
    with _client(server, token) as client:
        result = client.upload_release(image, manifest)
    _print_json(result) if as_json else console.print(
        f"stored release {result['version']} (id {result['id']}, sha256 {result['sha256']})"
    )


@releases_group.command("list")
@click.option("--all", "include_retired", is_flag=True, help="Include retired releases.")
@server_option
@token_option
@json_option
def releases_list(include_retired: bool, server: str, token: str | None, as_json: bool) -> None:
    """Releases in semantic-version order."""
    with _client(server, token) as client:
        rows = client.get("/api/releases", include_retired=include_retired or None)
    if as_json:
        _print_json(rows)
        return
    columns = [
        "id",
        "project",
        "version",
        "sequence",
        "size",
        "secure_version",
        "rollback",
        "retired",
        "created",
    ]
    console.print(_rows_table(f"{len(rows)} releases", rows, columns))


@releases_group.command("show")
@click.argument("release")
@server_option
@token_option
@json_option
def releases_show(release: str, server: str, token: str | None, as_json: bool) -> None:
    """One release (id or version) with its manifest."""
    with _client(server, token) as client:
        result = client.get(f"/api/releases/{release}")
    _print_json(result) if as_json else console.print(_kv_table(f"release {result['version']}", result))


@releases_group.command("retire")
@click.argument("release")
@server_option
@token_option
def releases_retire(release: str, server: str, token: str | None) -> None:
    """Stop offering RELEASE (id or version)."""
    with _client(server, token) as client:
        result = client.post(f"/api/releases/{release}/retire")
    console.print(f"release {result['version']} retired")


# --------------------------------------------------------------------------- admin


@click.group("admin")
def admin_group() -> None:
    """Admin users and tokens (roles: viewer, operator, admin)."""


@admin_group.command("bootstrap")
@click.option("--name", default="admin", show_default=True)
@click.option(
    "--role", type=click.Choice(["viewer", "operator", "admin"]), default="admin", show_default=True
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CSI_OTA_DATA_DIR",
    default=Path("ota-data"),
    show_default=True,
)
def admin_bootstrap(name: str, role: str, data_dir: Path) -> None:
    """Create an admin token directly in the registry (DEVICE_REGISTRY_DB or the data dir's SQLite)."""
    from csi_ota.controller.admin import bootstrap_admin
    from csi_ota.controller.db import database_url_from_env

    token = bootstrap_admin(database_url_from_env(data_dir), name=name, role=role)
    # The note goes to stderr so that TOKEN=$(csi-ota admin bootstrap) captures the token alone.
    click.echo(f"admin token for {name} ({role}), shown once:", err=True)
    click.echo(token)


@admin_group.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True)
@server_option
@token_option
@json_option
def admin_create(name: str, role: str, server: str, token: str | None, as_json: bool) -> None:
    """Create user NAME (or a new token for it) with ROLE; prints the token once."""
    with _client(server, token) as client:
        result = client.post("/api/admin/users", {"name": name, "role": role})
    _print_json(result) if as_json else console.print(
        f"token for {name} ({role}), shown once: {result['token']}"
    )


@admin_group.command("revoke")
@click.argument("name")
@server_option
@token_option
def admin_revoke(name: str, server: str, token: str | None) -> None:
    """Revoke every token of user NAME."""
    with _client(server, token) as client:
        result = client.post(f"/api/admin/users/{name}/revoke")
    console.print(f"{name}: {result['tokens_revoked']} token(s) revoked")


@admin_group.command("list")
@server_option
@token_option
@json_option
def admin_list(server: str, token: str | None, as_json: bool) -> None:
    """Admin users and roles."""
    with _client(server, token) as client:
        rows = client.get("/api/admin/users")
    _print_json(rows) if as_json else console.print(
        _rows_table("admin users", rows, ["name", "role", "disabled"])
    )


@admin_group.command("whoami")
@server_option
@token_option
def admin_whoami(server: str, token: str | None) -> None:
    """Which user the token belongs to."""
    with _client(server, token) as client:
        result = client.get("/api/whoami")
    console.print(f"{result['name']} ({result['role']})")


# --------------------------------------------------------------------------- audit


@click.group("audit")
def audit_group() -> None:
    """The audit log: management actions and device OTA state changes."""


def _audit_options(function):
    for option in reversed(
        [
            click.option("--actor", help="e.g. admin:alice or device:csi_sensor_001"),
            click.option("--action", help="e.g. device.assign, release.create, device.ota_state"),
            click.option("--target", help="e.g. device:csi_sensor_001"),
            click.option("--since", help="ISO 8601 time"),
            click.option("--until", help="ISO 8601 time"),
        ]
    ):
        function = option(function)
    return function


@audit_group.command("list")
@_audit_options
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@server_option
@token_option
@json_option
def audit_list(server: str, token: str | None, as_json: bool, **filters: Any) -> None:
    """Audit entries, oldest first."""
    with _client(server, token) as client:
        rows = client.get("/api/audit", **filters)
    if as_json:
        _print_json(rows)
        return
    console.print(
        _rows_table(f"{len(rows)} audit entries", rows, ["id", "at", "actor", "action", "target", "details"])
    )


@audit_group.command("export")
@_audit_options
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file (default stdout)."
)
@server_option
@token_option
def audit_export(out: Path | None, server: str, token: str | None, **filters: Any) -> None:
    """Export as JSON Lines."""
    from csi_ota.keys import write_bytes_atomic

    with _client(server, token) as client:
        if out is None:
            client.export_audit(sys.stdout, **filters)
            return
        import io

        buffer = io.StringIO()
        lines = client.export_audit(buffer, **filters)
    write_bytes_atomic(out, buffer.getvalue().encode())
    click.echo(f"wrote {lines} entries to {out}", err=True)


# --------------------------------------------------------------------------- mqtt-acl, openapi


@click.command("mqtt-acl")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where to write passwd, acl, controller.password.",
)
@click.option("--controller-user", default="ota-controller", show_default=True)
@server_option
@token_option
def mqtt_acl_command(out_dir: Path, controller_user: str, server: str, token: str | None) -> None:
    """Write Mosquitto's password and ACL files: each device publishes only under csi/<id>/."""
    from csi_ota.controller.mqtt_acl import write_mqtt_files

    with _client(server, token) as client:
        credentials = client.get("/api/mqtt/credentials")
    files = write_mqtt_files(
        out_dir, [(c["device_id"], c["password_hash"]) for c in credentials], controller_user=controller_user
    )
    console.print(f"password file: {files.password_file} ({files.devices} devices + {controller_user})")
    console.print(f"ACL file:      {files.acl_file}")
    console.print(
        f"controller password: {files.controller_password_file} (serve --mqtt-username {controller_user} --mqtt-password-file …)"
    )
    console.print("reload Mosquitto (SIGHUP) to apply")


@click.command("openapi")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default stdout).")
def openapi_command(out: Path | None) -> None:
    """Print the controller's OpenAPI document (docs/openapi.json)."""
    from csi_ota.controller.openapi import spec_text
    from csi_ota.keys import write_bytes_atomic

    text = spec_text()
    if out is None:
        click.echo(text, nl=False)
    else:
        write_bytes_atomic(out, text.encode())


COMMANDS = [
    serve_command,
    devices_group,
    releases_group,
    admin_group,
    audit_group,
    mqtt_acl_command,
    openapi_command,
]
