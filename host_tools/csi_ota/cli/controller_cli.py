"""`csi-ota serve` and the commands that drive a running controller.

`serve` runs the service; `releases`, `admin`, `audit` and
`mqtt-acl` talk to its management API (``--server``/CSI_OTA_SERVER,
``--token``/CSI_OTA_TOKEN); `admin bootstrap` writes the first admin token
straight into the registry; `openapi` prints the API description.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from csi_ota.cli.management_common import (
    EXISTING_FILE,
    console,
    err_console,
    json_option,
    kv_table,
    management_client,
    print_json,
    rows_table,
    server_option,
    token_option,
)
from csi_ota.controller import ADMIN_ROLES, DEFAULT_MQTT_CONTROLLER_USER, DEFAULT_MQTT_SHARE_GROUP

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
@click.option("--tls-cert", type=EXISTING_FILE, help="Server certificate for both ports (csi-ota certs).")
@click.option("--tls-key", type=EXISTING_FILE, help="Its private key.")
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Serve both ports over plain HTTP (tests on loopback, or behind a TLS proxy).",
)
@click.option(
    "--insecure-management-http",
    is_flag=True,
    help="Serve the management port (admin tokens) over plain HTTP while the device port uses TLS "
    "(only behind a TLS-terminating proxy or on a trusted network).",
)
@click.option(
    "--trusted-key",
    "trusted_keys",
    multiple=True,
    type=EXISTING_FILE,
    help="Release public key (repeatable); also TRUSTED_KEYS_DIR.",
)
@click.option("--mqtt-host", help="Mosquitto broker to subscribe to (csi/+/data, stats, heartbeat).")
@click.option(
    "--mqtt-port",
    type=click.IntRange(1, 65535),
    help="Broker port [default: 8883 with --mqtt-tls-ca, else 1883].",
)
@click.option(
    "--mqtt-tls-ca",
    type=EXISTING_FILE,
    envvar="MQTT_TLS_CA",
    help="Connect with TLS (mqtts), trusting this CA (csi-ota certs: ca.crt).",
)
@click.option("--mqtt-username", envvar="MQTT_USERNAME", help="Broker user (see csi-ota mqtt-acl).")
@click.option(
    "--mqtt-password-file", type=EXISTING_FILE, help="File holding the broker password (or MQTT_PASSWORD)."
)
@click.option(
    "--mqtt-share-group",
    envvar="MQTT_SHARE_GROUP",
    default=DEFAULT_MQTT_SHARE_GROUP,
    show_default=True,
    help="Shared-subscription group: the broker gives each message to one controller process. "
    "'' subscribes plainly (only for a single process).",
)
@click.option(
    "--mqtt-acl-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MQTT_ACL_DIR",
    help="Directory of Mosquitto's passwd/acl (csi-ota mqtt-acl): rewritten whenever a device token "
    "changes; its controller.password is the broker password unless --mqtt-password-file.",
)
@click.option(
    "--mosquitto-pid-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MOSQUITTO_PID_FILE",
    help="Mosquitto's pid file: SIGHUP it after rewriting --mqtt-acl-dir (revoked tokens cut off at once).",
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
    "--signed-download-links",
    "download_link_secret_file",
    metavar="SECRET_FILE",
    type=EXISTING_FILE,
    envvar="CSI_OTA_DOWNLOAD_LINK_SECRET_FILE",
    help="Offer firmware as links signed with this secret for nginx's secure_link module, so nginx in "
    "front serves the bytes itself (csi-ota download-links nginx-config).",
)
@click.option(
    "--download-link-lifetime",
    "download_link_lifetime_s",
    metavar="SECONDS",
    type=click.IntRange(60, 7 * 24 * 3600),
    default=7200,
    show_default=True,
    help="How long a signed link stays valid (also how long a revoked device's last link works).",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0.1, 3600),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a complete request line and headers; also the longest pause in a request body.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=4000,
    show_default=True,
    help="Open connections per port (also bounded by RLIMIT_NOFILE).",
)
@click.option(
    "--max-connections-per-client",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Open connections per client address and port (raise it behind a reverse proxy).",
)
@click.option(
    "--downloads-per-device",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Firmware downloads one device token may have in flight (a new one closes the oldest).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes serving the device port (default: one per CPU core).",
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
    insecure_management_http: bool,
    trusted_keys: tuple[Path, ...],
    mqtt_host: str | None,
    mqtt_port: int | None,
    mqtt_tls_ca: Path | None,
    mqtt_username: str | None,
    mqtt_password_file: Path | None,
    mqtt_share_group: str,
    mqtt_acl_dir: Path | None,
    mosquitto_pid_file: Path | None,
    device_rate: float,
    device_burst: int,
    accel_redirect_prefix: str | None,
    download_link_secret_file: Path | None,
    download_link_lifetime_s: int,
    header_timeout: float,
    max_connections: int,
    max_connections_per_client: int,
    downloads_per_device: int,
    workers: int | None,
    log_level: str,
) -> None:
    """Run the OTA controller: device API (8080) and management API (8081).

    Configuration comes from FIRMWARE_STORAGE_PATH, DEVICE_REGISTRY_DB, UPDATE_STRATEGY,
    FIRMWARE_MAX_SIZE, DEVICE_UPDATE_BATCH_SIZE, ROLLBACK_TIMEOUT_MIN, UPDATE_RETRY_COUNT,
    HEALTH_CHECK_INTERVAL_SEC and TRUSTED_KEYS_DIR (see docs/controller.md).
    """
    from csi_ota.controller.download_links import load_secret
    from csi_ota.controller.limits import ServerLimits
    from csi_ota.controller.server import ListenOptions, MqttOptions, check_listen_options, serve
    from csi_ota.controller.settings import settings_from_env

    settings = settings_from_env(
        data_dir,
        trusted_key_paths=trusted_keys,
        device_rate_per_s=device_rate,
        device_rate_burst=device_burst,
        accel_redirect_prefix=accel_redirect_prefix,
        download_link_secret=None
        if download_link_secret_file is None
        else load_secret(download_link_secret_file),
        download_link_lifetime_s=download_link_lifetime_s,
        reserved_device_ids=(mqtt_username,) if mqtt_username else (),
        mqtt_acl_dir=mqtt_acl_dir,
        mosquitto_pid_file=mosquitto_pid_file,
        mqtt_controller_user=mqtt_username or DEFAULT_MQTT_CONTROLLER_USER,
        downloads_per_device=downloads_per_device,
    )
    listen = ListenOptions(
        host,
        device_port,
        management_port,
        tls_cert,
        tls_key,
        insecure_http,
        log_level,
        insecure_management_http=insecure_management_http,
    )
    check_listen_options(listen)
    mqtt = None
    if mqtt_host:
        password = os.environ.get("MQTT_PASSWORD")
        if mqtt_password_file is None and mqtt_acl_dir is not None and password is None:
            default_file = mqtt_acl_dir / "controller.password"
            mqtt_password_file = default_file if default_file.is_file() else None
        if mqtt_password_file is not None:
            password = mqtt_password_file.read_text().strip()
        from csi_ota.controller.mqtt_bridge import subscriptions_for

        subscriptions_for(mqtt_share_group)  # refuses a bad group name before anything starts
        port = mqtt_port or (8883 if mqtt_tls_ca else 1883)
        mqtt = MqttOptions(mqtt_host, port, mqtt_username, password, mqtt_share_group, tls_ca=mqtt_tls_ca)
    limits = ServerLimits(
        header_timeout_s=header_timeout,
        max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
    )
    from csi_ota.controller.workers import default_worker_count

    serve(settings, listen, mqtt, limits, workers=workers or default_worker_count())


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
    with management_client(server, token) as client:
        result = client.upload_release(image, manifest)
    print_json(result) if as_json else console.print(
        f"stored release {result['version']} (id {result['id']}, sha256 {result['sha256']})"
    )


@releases_group.command("list")
@click.option("--all", "include_retired", is_flag=True, help="Include retired releases.")
@server_option
@token_option
@json_option
def releases_list(include_retired: bool, server: str, token: str | None, as_json: bool) -> None:
    """Releases in semantic-version order."""
    with management_client(server, token) as client:
        rows = client.get("/api/releases", include_retired=include_retired or None)
    if as_json:
        print_json(rows)
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
    console.print(rows_table(f"{len(rows)} releases", rows, columns))


@releases_group.command("show")
@click.argument("release")
@server_option
@token_option
@json_option
def releases_show(release: str, server: str, token: str | None, as_json: bool) -> None:
    """One release (id or version) with its manifest."""
    with management_client(server, token) as client:
        result = client.get(f"/api/releases/{release}")
    print_json(result) if as_json else console.print(kv_table(f"release {result['version']}", result))


@releases_group.command("retire")
@click.argument("release")
@server_option
@token_option
def releases_retire(release: str, server: str, token: str | None) -> None:
    """Stop offering RELEASE (id or version)."""
    with management_client(server, token) as client:
        result = client.post(f"/api/releases/{release}/retire")
    console.print(f"release {result['version']} retired")


# --------------------------------------------------------------------------- admin


@click.group("admin")
def admin_group() -> None:
    """Admin users and tokens (roles: viewer, operator, admin)."""


@admin_group.command("bootstrap")
@click.option("--name", default="admin", show_default=True)
@click.option("--role", type=click.Choice(ADMIN_ROLES), default="admin", show_default=True)
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
@click.option("--role", type=click.Choice(ADMIN_ROLES), required=True)
@server_option
@token_option
@json_option
def admin_create(name: str, role: str, server: str, token: str | None, as_json: bool) -> None:
    """Create user NAME (or a new token for it) with ROLE; prints the token once."""
    with management_client(server, token) as client:
        result = client.post("/api/admin/users", {"name": name, "role": role})
    print_json(result) if as_json else console.print(
        f"token for {name} ({role}), shown once: {result['token']}"
    )


@admin_group.command("revoke")
@click.argument("name")
@server_option
@token_option
def admin_revoke(name: str, server: str, token: str | None) -> None:
    """Revoke every token of user NAME."""
    with management_client(server, token) as client:
        result = client.post(f"/api/admin/users/{name}/revoke")
    console.print(f"{name}: {result['tokens_revoked']} token(s) revoked")


@admin_group.command("list")
@server_option
@token_option
@json_option
def admin_list(server: str, token: str | None, as_json: bool) -> None:
    """Admin users and roles."""
    with management_client(server, token) as client:
        rows = client.get("/api/admin/users")
    print_json(rows) if as_json else console.print(
        rows_table("admin users", rows, ["name", "role", "disabled"])
    )


@admin_group.command("whoami")
@server_option
@token_option
def admin_whoami(server: str, token: str | None) -> None:
    """Which user the token belongs to."""
    with management_client(server, token) as client:
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
@click.option(
    "--after-id", type=click.IntRange(0), default=0, show_default=True, help="Entries after this id (paging)."
)
@server_option
@token_option
@json_option
def audit_list(server: str, token: str | None, as_json: bool, **filters: Any) -> None:
    """Audit entries, oldest first (a page of --limit after --after-id)."""
    with management_client(server, token) as client:
        rows = client.get("/api/audit", **filters)
    if as_json:
        print_json(rows)
    else:
        console.print(
            rows_table(
                f"{len(rows)} audit entries", rows, ["id", "at", "actor", "action", "target", "details"]
            )
        )
    if rows and len(rows) == filters["limit"]:
        err_console.print(
            f"showing {len(rows)} entries (the --limit); more may follow: --after-id {rows[-1]['id']} "
            "for the next page, or `csi-ota audit export`"
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
    from csi_ota.fileio import write_atomic

    with management_client(server, token) as client:
        if out is None:
            client.export_audit(sys.stdout, **filters)
            return
        import io

        buffer = io.StringIO()
        lines = client.export_audit(buffer, **filters)
    write_atomic(out, buffer.getvalue().encode())
    click.echo(f"wrote {lines} entries to {out}", err=True)


# --------------------------------------------------------------------------- mqtt-acl, openapi


@click.command("mqtt-acl")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where to write passwd, acl, controller.password.",
)
@click.option("--controller-user", default=DEFAULT_MQTT_CONTROLLER_USER, show_default=True)
@server_option
@token_option
def mqtt_acl_command(out_dir: Path, controller_user: str, server: str, token: str | None) -> None:
    """Write Mosquitto's password and ACL files: each device publishes only under csi/<id>/."""
    from csi_ota.controller.mqtt_acl import write_mqtt_files

    with management_client(server, token) as client:
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
    from csi_ota.fileio import write_atomic

    text = spec_text()
    if out is None:
        click.echo(text, nl=False)
    else:
        write_atomic(out, text.encode())


# releases_group is registered by remote_cli (`csi-ota remote releases`, old name as a hidden alias).
COMMANDS = [
    serve_command,
    admin_group,
    audit_group,
    mqtt_acl_command,
    openapi_command,
]
