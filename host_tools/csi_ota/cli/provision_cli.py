"""`csi-ota provision` (device NVS image) and `csi-ota certs` (local CA + controller certificate)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from csi_ota import certs as certs_lib
from csi_ota import nvs_encryption
from csi_ota import provision as provision_lib
from csi_ota.cli.output import make_console
from csi_ota.errors import CsiOtaError
from csi_ota.secret_paths import refuse_unignored_secret

console = make_console()


def _int_auto_base(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 0)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number (decimal or 0x hex)") from None


def _config_rows(config: provision_lib.ProvisionConfig) -> list[tuple[str, str, str]]:
    rows = []
    for name, spec in provision_lib.PROVISION_FIELDS.items():
        value = getattr(config, name)
        if value is None:
            shown = "(not set)"
        elif name == "ca_cert":
            shown = f"PEM, {len(value)} bytes"
        elif name in ("auth_token", "wifi_password"):
            shown = f"{'*' * min(len(value), 8)} ({len(value)} bytes)"
        else:
            shown = str(int(value)) if isinstance(value, bool) else str(value)
        rows.append((name, f"{spec.nvs_key} ({spec.encoding})", shown))
    return rows


def _print_config(config: provision_lib.ProvisionConfig, title: str) -> None:
    table = Table(title=title)
    for column in ("field", "NVS key (type)", "value"):
        table.add_column(column)
    for row in _config_rows(config):
        table.add_row(*row)
    console.print(table)


def _config_json(config: provision_lib.ProvisionConfig, **extra: object) -> str:
    payload = dict(extra)
    payload["namespace"] = provision_lib.NVS_NAMESPACE
    payload["config"] = config.as_dict()
    payload["nvs_keys"] = {name: spec.nvs_key for name, spec in provision_lib.PROVISION_FIELDS.items()}
    return json.dumps(payload, indent=2)


@click.group("provision", invoke_without_command=True)
@click.option("--device-id", help="Unique device id: A-Z a-z 0-9 _ -, at most 31 bytes.")
@click.option("--auth-token", help="The device's bearer token, at most 127 bytes.")
@click.option("--update-url", help="Firmware URL (http:// or https://), at most 255 bytes.")
@click.option("--version-check-url", help="Version-check URL, at most 255 bytes.")
@click.option(
    "--check-interval-sec",
    type=click.IntRange(provision_lib.MIN_CHECK_INTERVAL_SEC, provision_lib.MAX_CHECK_INTERVAL_SEC),
    default=provision_lib.DEFAULT_CHECK_INTERVAL_SEC,
    show_default=True,
    help="Seconds between version checks (a minute to a week).",
)
@click.option("--auto-update/--no-auto-update", default=True, show_default=True)
@click.option(
    "--ca-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The controller's CA (PEM).",
)
@click.option("--wifi-ssid", help="Optional: Wi-Fi network (at most 32 bytes).")
@click.option("--wifi-password", help="Optional: WPA2 passphrase (8-63 chars) or 64-hex PSK; '' for open.")
@click.option("--mqtt-uri", help="Optional: MQTT broker for CSI data (mqtt://host:1883), at most 127 bytes.")
@click.option("--data-url", help="Optional: HTTP endpoint for CSI data, at most 127 bytes.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Where to write the NVS image.")
@click.option(
    "--layout",
    default="4MB",
    show_default=True,
    help="Partition layout (4MB/8MB/16MB, a spec, CSV or binary table) whose nvs partition sets --size.",
)
@click.option(
    "--size",
    callback=_int_auto_base,
    help="NVS partition size, decimal or 0x hex [default: the layout's nvs size, 0x14000 for 4MB].",
)
@click.option(
    "--encrypt",
    is_flag=True,
    help="Encrypt the image for CONFIG_NVS_ENCRYPTION's HMAC scheme (a new HMAC key unless --hmac-key).",
)
@click.option(
    "--hmac-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --encrypt: the device's existing 32-byte HMAC key (already in its eFuse).",
)
@click.option(
    "--hmac-key-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --encrypt: where the new HMAC key goes (mode 0600) [default: OUT.hmac_key.bin].",
)
@click.option(
    "--efuse-key-id",
    type=click.IntRange(0, 5),
    default=0,
    show_default=True,
    help="With --encrypt: the eFuse key block (BLOCK_KEY0-5) that holds the HMAC key.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@click.pass_context
def provision_group(
    ctx: click.Context,
    device_id: str | None,
    auth_token: str | None,
    update_url: str | None,
    version_check_url: str | None,
    check_interval_sec: int,
    auto_update: bool,
    ca_cert: Path | None,
    wifi_ssid: str | None,
    wifi_password: str | None,
    mqtt_uri: str | None,
    data_url: str | None,
    out: Path | None,
    layout: str,
    size: int | None,
    encrypt: bool,
    hmac_key: Path | None,
    hmac_key_out: Path | None,
    efuse_key_id: int,
    as_json: bool,
) -> None:
    """Build a device's NVS partition image with its OTA configuration (docs/provisioning.md).

    --encrypt makes an image only a device with the HMAC key in its eFuse reads
    (NVS encryption, docs/security.md): burn the key before the first boot.

    Flash it at the nvs partition's offset (`csi-ota partitions` shows the layout).
    `csi-ota provision show NVS.bin` prints what an image holds.
    """
    if ctx.invoked_subcommand is not None:
        return
    required = {
        "--device-id": device_id,
        "--auth-token": auth_token,
        "--update-url": update_url,
        "--version-check-url": version_check_url,
        "--out": out,
    }
    missing = [flag for flag, value in required.items() if value is None]
    if missing:
        raise click.UsageError(f"missing option{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    assert device_id and auth_token is not None and update_url and version_check_url and out
    config = provision_lib.ProvisionConfig(
        update_url=update_url,
        version_check_url=version_check_url,
        device_id=device_id,
        auth_token=auth_token,
        check_interval_sec=check_interval_sec,
        auto_update_enabled=auto_update,
        ca_cert=provision_lib.read_ca_cert(ca_cert) if ca_cert else None,
        wifi_ssid=wifi_ssid,
        wifi_password=wifi_password,
        mqtt_uri=mqtt_uri,
        data_url=data_url,
    )
    if not encrypt and (hmac_key is not None or hmac_key_out is not None):
        raise click.UsageError("--hmac-key and --hmac-key-out need --encrypt")
    if hmac_key is not None and hmac_key_out is not None:
        raise click.UsageError("--hmac-key reuses a key; --hmac-key-out writes a new one: give one of them")
    key_path, key = None, None
    if encrypt:
        if hmac_key is not None:
            key_path, key = hmac_key, nvs_encryption.read_hmac_key(hmac_key)
        else:
            key_path = hmac_key_out or out.with_name(out.name + ".hmac_key.bin")
            if key_path.exists():
                raise CsiOtaError(
                    f"{key_path} exists: a key that may already be in a device's eFuse is never overwritten "
                    "(reuse it with --hmac-key, or choose another --hmac-key-out)"
                )
            key = nvs_encryption.new_hmac_key()
    nvs_offset, nvs_size = provision_lib.nvs_partition_of(layout)
    data = provision_lib.build_nvs_image(config, nvs_size if size is None else size, hmac_key=key)
    if key is not None and hmac_key is None:
        nvs_encryption.write_hmac_key(key_path, key)  # first: an image without its key is useless
    provision_lib.write_image_file(out, data, encrypted=key is not None)
    encryption = None
    if key is not None:
        encryption = {
            "scheme": "hmac",
            "hmac_key": str(key_path),
            "efuse_key_id": efuse_key_id,
            "burn": nvs_encryption.burn_command(key_path, efuse_key_id),
            "sdkconfig": [line.format(key_id=efuse_key_id) for line in nvs_encryption.SDKCONFIG_LINES],
        }
    if as_json:
        click.echo(
            _config_json(config, out=str(out), size=len(data), flash_offset=nvs_offset, encryption=encryption)
        )
        return
    state = "encrypted" if key is not None else "plain"
    _print_config(config, f"{out} ({len(data)} bytes, {state}, namespace {provision_lib.NVS_NAMESPACE})")
    if encryption is not None:
        console.print(f"HMAC key: {key_path} (mode 0600; keep it secret, it decrypts this image)")
        console.print(f"before the first boot, burn it (irreversible): {encryption['burn']}")
        console.print(f"firmware sdkconfig: {' '.join(encryption['sdkconfig'])}")
    console.print(f"flash it with: esptool --chip esp32s3 write-flash {nvs_offset:#x} {out}")


@provision_group.command("show")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--hmac-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The HMAC key of an encrypted image (provision --encrypt).",
)
@click.option("--json", "as_json", is_flag=True)
def provision_show(image: Path, hmac_key: Path | None, as_json: bool) -> None:
    """Print the OTA configuration stored in an NVS partition IMAGE."""
    key = nvs_encryption.read_hmac_key(hmac_key) if hmac_key is not None else None
    config = provision_lib.config_from_nvs(image.read_bytes(), hmac_key=key)
    if as_json:
        click.echo(_config_json(config, path=str(image)))
        return
    _print_config(config, str(image))


@click.group("certs")
def certs_group() -> None:
    """A local CA and the controller's HTTPS certificate (ECDSA P-256)."""


@certs_group.command("init")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    help="Extra DNS name or IP for the server certificate (localhost, 127.0.0.1, ::1 are always in).",
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--force", is_flag=True, help="Write the keys even where git would not ignore them.")
def certs_init(out_dir: Path, hostnames: tuple[str, ...], as_json: bool, force: bool) -> None:
    """Create ca.crt/ca.key (kept if present) and issue server.crt/server.key in --out.

    Inside a git work tree --out must be ignored (.gitignore) so the private keys cannot be
    committed; --force writes them anyway."""
    for key_file in (certs_lib.CA_KEY_FILE, certs_lib.SERVER_KEY_FILE):
        refuse_unignored_secret(out_dir / key_file, "the private key", force=force)
    ca, server, ca_new = certs_lib.init_certs(out_dir, hostnames)
    summary = certs_lib.certificate_summary(server.cert)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ca_cert": str(ca.cert),
                    "ca_key": str(ca.key),
                    "ca_created": ca_new,
                    "server_cert": str(server.cert),
                    "server_key": str(server.key),
                    "server": summary,
                },
                indent=2,
            )
        )
        return
    console.print(f"CA:          {ca.cert} ({'new' if ca_new else 'kept'}; key {ca.key}, mode 0600)")
    console.print(f"server cert: {server.cert} (key {server.key}, mode 0600)")
    console.print(f"names:       {', '.join(summary['subject_alt_names'])}")  # type: ignore[arg-type]
    console.print(f"valid until: {summary['not_after']}")
    console.print(f"devices trust the CA: csi-ota provision … --ca-cert {ca.cert}")


@certs_group.command("broker")
@click.option(
    "--ca-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory of ca.crt/ca.key (csi-ota certs init --out).",
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    required=True,
    help="DNS name or IP the devices and the controller use for the broker (repeatable).",
)
def certs_broker(ca_dir: Path, out_dir: Path, hostnames: tuple[str, ...]) -> None:
    """Issue the MQTT broker's TLS certificate (server.crt/server.key + ca.crt in --out) from the local CA.

    Mosquitto: listener 8883, cafile/certfile/keyfile pointing at these files.
    """
    server = certs_lib.create_server_cert(ca_dir, out_dir, list(hostnames))
    ca_copy = Path(out_dir) / "ca.crt"
    ca_copy.write_bytes((Path(ca_dir) / "ca.crt").read_bytes())
    console.print(f"broker cert: {server.cert} (key {server.key}, mode 0600), CA copied to {ca_copy}")
    console.print(
        f"names:       {', '.join(certs_lib.certificate_summary(server.cert)['subject_alt_names'])}"
    )


@certs_group.command("show")
@click.argument("cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def certs_show(cert: Path, as_json: bool) -> None:
    """Print subject, issuer, validity and names of a PEM certificate."""
    try:
        summary = certs_lib.certificate_summary(cert)
    except ValueError as exc:
        raise CsiOtaError(f"{cert}: not a PEM certificate ({exc})") from None
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        console.print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")


COMMANDS = [provision_group, certs_group]
