"""`csi-ota keys …` and `csi-ota release …`: thin commands over csi_ota.keys / release / manifest."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from csi_ota import keys as keys_lib
from csi_ota import release as release_lib
from csi_ota import secure_boot
from csi_ota.cli.output import make_console
from csi_ota.errors import EXIT_OPERATION_FAILED, CsiOtaError
from csi_ota.manifest import Manifest, check_signature, parse_manifest
from csi_ota.secret_paths import refuse_unignored_secret

console = make_console()

EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _manifest_table(m: Manifest, title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for name, value in m.as_dict().items():
        table.add_row(name, str(int(value)) if isinstance(value, bool) else str(value))
    return table


def _print_json(payload: object) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=False))


# ---------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------


@click.group("keys")
def keys_group() -> None:
    """Release signing keys (ECDSA P-256)."""


@keys_group.command("generate")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing key (its releases stay signed by the old one); also write inside a "
    "git work tree where OUT is not ignored.",
)
def keys_generate(out: Path, force: bool) -> None:
    """Write a new private key to OUT (mode 0600) and its public key beside it (OUT stem + .pub.pem).

    A missing directory is created. Inside a git work tree OUT must be ignored (.gitignore), so
    `git add .` cannot commit the key; --force writes it anyway."""
    refuse_unignored_secret(out, "the private key", force=force)
    keys_lib.generate_key(out, force=force)
    public = keys_lib.load_public_key(out)
    console.print(f"private key: {out} (mode 0600, keep it secret)")
    console.print(f"public key:  {keys_lib.public_key_path_for(out)}")
    console.print(f"key id:      {keys_lib.key_id_for(public)}")


@keys_group.command("show-public")
@click.argument("key_files", metavar="KEY...", nargs=-1, required=True, type=EXISTING_FILE)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(keys_lib.PUBLIC_KEY_FORMATS),
    default="pem",
    show_default=True,
    help="pem; hex = raw 04||X||Y (130 hex); c = C array + key id; kconfig = CONFIG_CSI_OTA_TRUSTED_KEYS line.",
)
def keys_show_public(key_files: tuple[Path, ...], fmt: str) -> None:
    """Print the public key of each KEY (private or public PEM); never prints a private key."""
    public_keys = [keys_lib.load_public_key(p) for p in key_files]
    if fmt == "kconfig":
        click.echo(keys_lib.kconfig_trusted_keys_line(public_keys))
        return
    for key in public_keys:
        click.echo(keys_lib.format_public_key(key, fmt), nl=False)


@keys_group.command("id")
@click.argument("key_file", metavar="KEY", type=EXISTING_FILE)
def keys_id(key_file: Path) -> None:
    """Print the 16-hex key id (first 8 bytes of SHA-256 of the raw public key)."""
    click.echo(keys_lib.key_id_for(keys_lib.load_public_key(key_file)))


@keys_group.command("generate-secure-boot")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--force", is_flag=True, help="Replace an existing key; also write where git would not ignore OUT."
)
def keys_generate_secure_boot(out: Path, force: bool) -> None:
    """Write a new RSA-3072 Secure Boot v2 signing key to OUT (espsecure; mode 0600)."""
    refuse_unignored_secret(out, "the Secure Boot signing key", force=force)
    secure_boot.generate_sbv2_key(out, force=force)
    console.print(f"Secure Boot v2 key: {out} (RSA-3072, mode 0600, keep it secret)")


# ---------------------------------------------------------------------------
# release
# ---------------------------------------------------------------------------


@click.group("release")
def release_group() -> None:
    """Local: sign and verify release files (image + manifest). To the controller: `remote releases`."""


@release_group.command("create")
@click.argument("image", type=EXISTING_FILE)
@click.option(
    "--key", "key_path", required=True, type=EXISTING_FILE, help="Release signing key (private PEM)."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory for <project>-<version>.bin and .manifest.",
)
@click.option(
    "--sequence", type=click.IntRange(1, 0xFFFFFFFF), help="Explicit sequence (above every earlier one)."
)
@click.option("--notes", default="", help="Free text, at most 200 bytes.")
@click.option("--rollback", is_flag=True, help="A signed rollback: lets devices accept a lower version.")
@click.option(
    "--secure-boot-key",
    type=EXISTING_FILE,
    help="Also sign for Secure Boot v2 (RSA-3072); the manifest covers the signed image.",
)
@click.option(
    "--slot-size",
    type=click.IntRange(1),
    default=release_lib.DEFAULT_SLOT_SIZE_BYTES,
    show_default=True,
    help="OTA slot size in bytes; larger images are refused.",
)
@click.option(
    "--force", is_flag=True, help="Replace an existing release of this version in --out (new sequence)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest fields and file paths as JSON.")
def release_create(
    image: Path,
    key_path: Path,
    out_dir: Path,
    sequence: int | None,
    notes: str,
    rollback: bool,
    secure_boot_key: Path | None,
    slot_size: int,
    force: bool,
    as_json: bool,
) -> None:
    """Sign IMAGE: write <project>-<version>.bin and .manifest into --out (never over an existing one
    unless --force)."""
    files = release_lib.create_release(
        image,
        key_path,
        out_dir,
        sequence=sequence,
        notes=notes,
        rollback=rollback,
        secure_boot_key=secure_boot_key,
        slot_size_bytes=slot_size,
        force=force,
    )
    if as_json:
        _print_json(
            {
                "image": str(files.image_path),
                "manifest_path": str(files.manifest_path),
                "manifest": files.manifest.as_dict(),
            }
        )
        return
    console.print(_manifest_table(files.manifest, "release"))
    console.print(f"image:    {files.image_path}")
    console.print(f"manifest: {files.manifest_path}")


@release_group.command("verify")
@click.argument("image", type=EXISTING_FILE)
@click.argument("manifest", type=EXISTING_FILE)
@click.option(
    "--key",
    "key_paths",
    multiple=True,
    required=True,
    type=EXISTING_FILE,
    help="A trusted public (or private) key; repeat for several.",
)
@click.option(
    "--slot-size", type=click.IntRange(1), default=release_lib.DEFAULT_SLOT_SIZE_BYTES, show_default=True
)
@click.option("--secure-boot-key", type=EXISTING_FILE, help="Also verify the Secure Boot v2 signature.")
@click.option("--json", "as_json", is_flag=True, help="Print every check as JSON.")
def release_verify(
    image: Path,
    manifest: Path,
    key_paths: tuple[Path, ...],
    slot_size: int,
    secure_boot_key: Path | None,
    as_json: bool,
) -> None:
    """Check MANIFEST's signature and that it describes IMAGE (digest, size, chip, app_desc)."""
    trusted = [keys_lib.load_public_key(p) for p in key_paths]
    image_bytes = image.read_bytes()
    results = release_lib.check_release(
        image_bytes, manifest.read_bytes(), trusted, slot_size_bytes=slot_size
    )
    if secure_boot_key is not None:
        try:
            secure_boot.verify_app_image(image_bytes, secure_boot_key)
            results.append(release_lib.CheckResult("secure boot v2", True, "signature block verifies"))
        except CsiOtaError as exc:
            if exc.exit_code != EXIT_OPERATION_FAILED:
                raise
            results.append(release_lib.CheckResult("secure boot v2", False, exc.message))
    failed = [r for r in results if not r.ok]
    if as_json:
        _print_json({"ok": not failed, "checks": [r.__dict__ for r in results]})
    else:
        table = Table(title=f"release verify {image.name}")
        for column in ("check", "result", "detail"):
            table.add_column(column)
        for r in results:
            table.add_row(r.name, "[green]ok[/]" if r.ok else "[bold red]FAILED[/]", r.detail)
        console.print(table)
    if failed:
        raise CsiOtaError(
            f"release verify failed: {release_lib.failed_checks_message(results)}",
            exit_code=EXIT_OPERATION_FAILED,
        )


@release_group.command("show")
@click.argument("manifest", type=EXISTING_FILE)
@click.option("--key", "key_paths", multiple=True, type=EXISTING_FILE, help="Also check the signature.")
@click.option("--json", "as_json", is_flag=True)
def release_show(manifest: Path, key_paths: tuple[Path, ...], as_json: bool) -> None:
    """Print MANIFEST's fields (strictly parsed); with --key also check its signature."""
    signed = parse_manifest(manifest.read_bytes())
    signature_state = "not checked (pass --key)"
    if key_paths:
        by_id = {keys_lib.key_id_for(k): k for k in (keys_lib.load_public_key(p) for p in key_paths)}
        key = by_id.get(signed.manifest.key_id)
        if key is None:
            signature_state = f"key {signed.manifest.key_id} not among the given keys"
        else:
            signature_state = "valid" if check_signature(signed, key) else "INVALID"
    if as_json:
        _print_json(
            {
                "manifest": signed.manifest.as_dict(),
                "signature": signed.signature.hex(),
                "signature_state": signature_state,
                "unknown_keys": list(signed.unknown_keys),
            }
        )
    else:
        console.print(_manifest_table(signed.manifest, str(manifest)))
        console.print(f"signature: {signature_state}")
        if signed.unknown_keys:
            console.print(f"ignored unknown keys: {', '.join(signed.unknown_keys)}")
    if key_paths and signature_state != "valid":
        raise CsiOtaError(f"manifest signature: {signature_state}", exit_code=EXIT_OPERATION_FAILED)


COMMANDS = [keys_group, release_group]
