"""`csi-ota corrupt KIND IN OUT`: one bad image or manifest from a good one (csi_ota.corrupt)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from csi_ota import corrupt as corrupt_lib
from csi_ota.cli.output import make_console

console = make_console()


@click.command("corrupt")
@click.argument("kind", required=False, metavar="KIND")
@click.argument(
    "in_path", required=False, metavar="IN", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.argument("out_path", required=False, metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_kinds", is_flag=True, help="List the kinds, one line each.")
@click.option(
    "--key",
    "key_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Release key: image kinds also write a manifest for OUT; other-image re-signs with it.",
)
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the manifest for OUT goes (image kinds with --key; default OUT with suffix .manifest).",
)
@click.option(
    "--sequence", type=click.IntRange(1, 0xFFFFFFFF), help="Sequence of that manifest (default: next)."
)
@click.option("--seed", type=int, help="Seed for `random` (reproducible bytes).")
@click.option(
    "--other-image",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="other-image: take the sha256 of this image.",
)
@click.option("--json", "as_json", is_flag=True)
def corrupt_command(
    kind: str | None,
    in_path: Path | None,
    out_path: Path | None,
    list_kinds: bool,
    key_path: Path | None,
    manifest_path: Path | None,
    sequence: int | None,
    seed: int | None,
    other_image: Path | None,
    as_json: bool,
) -> None:
    """Write OUT: IN (a good image or manifest) with exactly one defect of KIND.

    Image kinds: truncate, truncate-header, random, wrong-chip, chip-rev,
    bad-checksum, bad-sha256, too-large. Manifest kinds: bad-signature,
    unknown-key, other-image. `--list` describes each and the reason a device
    reports.
    """
    if list_kinds:
        if as_json:
            click.echo(json.dumps([k.__dict__ for k in corrupt_lib.CORRUPT_KINDS.values()], indent=2))
        else:
            for k in corrupt_lib.CORRUPT_KINDS.values():
                click.echo(f"{k.name:16} {k.target:9} {k.description} -> {k.reason}")
        return
    if kind is None or in_path is None or out_path is None:
        raise click.UsageError("KIND, IN and OUT are required (or --list)")
    result = corrupt_lib.corrupt_file(
        kind,
        in_path,
        out_path,
        key_path=key_path,
        manifest_path=manifest_path,
        sequence=sequence,
        seed=seed,
        other_image_path=other_image,
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "kind": result.kind.name,
                    "target": result.kind.target,
                    "out": str(result.out_path),
                    "manifest": str(result.manifest_path) if result.manifest_path else None,
                    "detail": result.detail,
                    "expected_reason": result.kind.reason,
                },
                indent=2,
            )
        )
        return
    console.print(f"{result.kind.name}: {result.detail}")
    console.print(
        f"wrote {result.out_path}" + (f" and {result.manifest_path}" if result.manifest_path else "")
    )
    console.print(f"a device should report: {result.kind.reason}")


COMMANDS = [corrupt_command]
