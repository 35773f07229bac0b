"""`csi-ota rollout …` (progressive rollouts on a running controller) and `csi-ota fleet` (the simulator)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from csi_ota.cli.management_common import (
    EXISTING_FILE,
    console,
    json_option,
    print_json,
    safe_text,
    server_option,
    token_option,
)
from csi_ota.controller.client import ManagementClient
from csi_ota.errors import EXIT_OPERATION_FAILED, CsiOtaError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|min|h|d)?$")
DURATION_UNITS_S = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration_s(text: str) -> int:
    """``90``, ``90s``, ``30m``, ``24h``, ``2d`` → seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise CsiOtaError(f"not a duration: {text!r} (use e.g. 90s, 30m, 24h, 2d)")
    return int(float(match.group(1)) * DURATION_UNITS_S[match.group(2)])


def parse_stages(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise CsiOtaError(f"stages must be comma-separated percents like 10,50,100, got {text!r}") from None


def _summary_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="rollouts")
    for column in ("id", "name", "release", "state", "stage", "devices", "succeeded", "failed", "pending"):
        table.add_column(column)
    for r in rows:
        counts = r.get("counts", {})
        table.add_row(
            str(r["id"]),
            r["name"],
            str(r["release"]),
            r["state"],
            str(r["current_stage"]),
            str(r["devices"]),
            str(counts.get("succeeded", 0)),
            str(counts.get("failed", 0)),
            str(counts.get("pending", 0) + counts.get("offered", 0)),
        )
    return table


def _print_detail(detail: dict[str, Any]) -> None:
    console.print(_summary_table([detail]))
    if detail.get("halt_reason"):
        console.print(Text("halted: ", style="bold red") + safe_text(detail["halt_reason"]))
    stages = Table(title="stages")
    for column in ("stage", "percent", "state", "members", "succeeded", "failed", "updating", "pending"):
        stages.add_column(column)
    for s in detail.get("stages", []):
        c = s.get("counts", {})
        stages.add_row(
            str(s["stage"]),
            f"{s['percent']} %",
            s["state"],
            str(s["members"]),
            str(c.get("succeeded", 0)),
            str(c.get("failed", 0)),
            str(c.get("offered", 0)),
            str(c.get("pending", 0)),
        )
    console.print(stages)
    events = Table(title="gate decisions and events")
    events.add_column("virtual time", no_wrap=True)
    events.add_column("kind")
    events.add_column("message")
    for e in detail.get("events", []):
        events.add_row((e.get("virtual_time") or "")[:19], e["kind"], e["message"])
    console.print(events)


@click.group("rollout")
def rollout_group() -> None:
    """Progressive rollouts: stages, soak, health gates, automatic rollback (docs/rollout.md)."""


@rollout_group.command("create")
@click.option("--release", "release", required=True, help="Release version (or id) to roll out.")
@click.option("--all", "select_all", is_flag=True, help="Every registered device.")
@click.option("--tag", help="Devices carrying this tag.")
@click.option("--device", "device_ids", multiple=True, help="A device id (repeat for several).")
@click.option("--stages", default="10,50,100", show_default=True, help="Cumulative percents per stage.")
@click.option("--soak", default="24h", show_default=True, help="Soak time per stage (s, m, h, d).")
@click.option("--batch-size", type=int, help="Concurrent updates (default DEVICE_UPDATE_BATCH_SIZE).")
@click.option("--success-percent", type=float, default=95.0, show_default=True)
@click.option(
    "--success-min", type=int, default=1, show_default=True, help="Minimum succeeded devices per gate."
)
@click.option("--failure-percent", type=float, default=10.0, show_default=True)
@click.option("--failure-min", type=int, default=3, show_default=True, help="Failures needed before halting.")
@click.option("--window", default="", help="Daily update window, e.g. 01:00-05:00 (default: always).")
@click.option("--time-zone", default="UTC", show_default=True, help="Time zone of the window (IANA name).")
@click.option(
    "--health-timeout", help="Silence after an offer that counts as failure (default ROLLBACK_TIMEOUT_MIN)."
)
@click.option("--retries", type=int, help="Retries per device (default UPDATE_RETRY_COUNT).")
@click.option("--rollback", type=click.Choice(["auto", "none"]), default="auto", show_default=True)
@click.option("--webhook", default="", help="URL that receives a JSON POST when the rollout halts.")
@click.option("--previous-release", help="Rollback target (default: the release most devices run).")
@click.option(
    "--no-rollback-target-ok",
    "no_rollback_target_ok",
    is_flag=True,
    help="With --rollback auto, create the rollout even if no rollback target is known.",
)
@click.option("--name", default="", help="A name for people.")
@server_option
@token_option
@json_option
def create_command(
    release, select_all, tag, device_ids, stages, soak, batch_size, success_percent, success_min,
    failure_percent, failure_min, window, time_zone, health_timeout, retries, rollback, webhook,
    previous_release, no_rollback_target_ok, name, server, token, as_json,
) -> None:  # fmt: skip
    """Create a rollout of RELEASE on a selection of devices."""
    chosen = [bool(select_all), bool(tag), bool(device_ids)]
    if sum(chosen) != 1:
        raise CsiOtaError("choose exactly one of --all, --tag, --device")
    selection: dict[str, Any] = (
        {"all": True} if select_all else {"tag": tag} if tag else {"devices": list(device_ids)}
    )
    policy: dict[str, Any] = {
        "stages": parse_stages(stages),
        "soak_s": parse_duration_s(soak),
        "success_percent": success_percent,
        "success_min_count": success_min,
        "failure_percent": failure_percent,
        "failure_min_count": failure_min,
        "window": window,
        "window_time_zone": time_zone,
        "rollback": rollback,
    }
    if batch_size is not None:
        policy["batch_size"] = batch_size
    if health_timeout is not None:
        policy["health_timeout_s"] = parse_duration_s(health_timeout)
    if retries is not None:
        policy["max_retries"] = retries
    if webhook:
        policy["alert_webhook"] = webhook
    body: dict[str, Any] = {"release": release, "selection": selection, "policy": policy, "name": name}
    if previous_release:
        body["previous_release"] = previous_release
    if no_rollback_target_ok:
        body["allow_no_rollback_target"] = True
    with ManagementClient(server, token) as client:
        detail = client.post("/api/rollouts", body)
    if as_json:
        print_json(detail)
    else:
        _print_detail(detail)
        sizes = ", ".join(f"stage {s['stage']} ({s['percent']} %): {s['members']}" for s in detail["stages"])
        console.print(f"devices per stage: {sizes}")
        target = detail.get("previous_release")
        console.print(
            f"rollback target: {target}"
            if target
            else f"rollback target: none known (rollback {detail['policy']['rollback']}: a halt only halts)"
        )


@rollout_group.command("list")
@click.option("--state", help="Only rollouts in this state.")
@server_option
@token_option
@json_option
def list_command(state, server, token, as_json) -> None:
    """List rollouts, newest first."""
    with ManagementClient(server, token) as client:
        rows = client.get("/api/rollouts", state=state)
    if as_json:
        print_json(rows)
    else:
        console.print(_summary_table(rows))


@rollout_group.command("show")
@click.argument("rollout_id", type=int)
@server_option
@token_option
@json_option
def show_command(rollout_id, server, token, as_json) -> None:
    """Show a rollout: stages, counts, gate decisions."""
    with ManagementClient(server, token) as client:
        detail = client.get(f"/api/rollouts/{rollout_id}")
    if as_json:
        print_json(detail)
    else:
        _print_detail(detail)


def _control_command(action: str, help_text: str):
    @click.argument("rollout_id", type=int)
    @server_option
    @token_option
    @json_option
    def command(rollout_id, server, token, as_json) -> None:
        with ManagementClient(server, token) as client:
            result = client.post(f"/api/rollouts/{rollout_id}/{action}")
        if as_json:
            print_json(result)
        else:
            console.print(
                f"rollout {result['id']}: [bold]{result['state']}[/] (stage {result['current_stage']})"
            )

    command.__doc__ = help_text
    return rollout_group.command(action)(command)


_control_command("pause", "Pause: no new offers; updating devices finish.")
_control_command("resume", "Resume a paused or halted rollout.")
_control_command("abort", "Abort: withdraw offers (downloading devices stop at their next check).")
_control_command("promote", "Open the next stage now, skipping the soak.")


@rollout_group.command("exclude")
@click.argument("rollout_id", type=int)
@click.argument("device_id")
@server_option
@token_option
@json_option
def exclude_command(rollout_id, device_id, server, token, as_json) -> None:
    """Remove DEVICE_ID from the rollout (its offer is withdrawn)."""
    with ManagementClient(server, token) as client:
        result = client.post(f"/api/rollouts/{rollout_id}/exclude", {"device_id": device_id})
    if as_json:
        print_json(result)
    else:
        console.print(f"device {result['device_id']} excluded from rollout {result['rollout_id']}")


# --------------------------------------------------------------------------- the fleet simulator


@click.command("fleet")
@click.option(
    "--controller", "device_urls", multiple=True, required=True, help="Device API URL (repeat: fail-over)."
)
@click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON file of device ids and tokens (written by --register).")  # fmt: skip
@click.option("--register", "register_count", type=int, help="Register this many new devices first.")
@click.option("--prefix", default="sim", show_default=True, help="Device id prefix for --register.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=EXISTING_FILE, required=True,
              help="Release public key the simulated devices trust.")  # fmt: skip
@click.option(
    "--behaviours", default="healthy", show_default=True, help="Mix, e.g. healthy=70,fail_selftest=30."
)
@click.option("--initial-version", default="1.0.0", show_default=True)
@click.option("--initial-sequence", type=int, default=0, show_default=True, help="Highest accepted sequence.")
@click.option("--check-interval", default="1h", show_default=True, help="Version-check interval (virtual).")
@click.option("--heartbeat-interval", default="5m", show_default=True, help="Heartbeat interval (virtual).")
@click.option(
    "--time-scale", type=float, default=1.0, show_default=True, help="Virtual seconds per real second."
)
@click.option("--duration", default="10m", show_default=True, help="Wall-clock bound on the run.")
@click.option("--rollout", "rollout_id", type=int, help="Follow this rollout and stop when it ends.")
@click.option("--ca-cert", type=EXISTING_FILE, help="CA certificate of the controller (HTTPS).")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON summary here too.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for behaviours and jitter.")
@click.option(
    "--mqtt", "mqtt_address", help="Broker HOST:PORT: the first --mqtt-devices heart-beat over MQTT."
)
@click.option("--mqtt-devices", type=int, default=0, show_default=True, help="Devices that use MQTT.")
@click.option("--virtual-esp32", "virtual_esp32", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Run the last N devices as virtual ESP32-S3 processes (csi-ota-sim); "
                   "--register adds N more for them.")  # fmt: skip
@server_option
@token_option
@click.option("--quiet", is_flag=True, help="No live display; only the JSON summary.")
def fleet_command(
    device_urls, credentials, register_count, prefix, trusted_keys, behaviours, initial_version,
    initial_sequence, check_interval, heartbeat_interval, time_scale, duration, rollout_id, ca_cert,
    summary_path, seed, mqtt_address, mqtt_devices, virtual_esp32, server, token, quiet,
) -> None:  # fmt: skip
    """Simulate a fleet of devices speaking the real protocol to a controller; print a JSON summary."""
    import asyncio

    from csi_ota.fileio import write_atomic
    from csi_ota.fleet.behaviours import BehaviourMix
    from csi_ota.fleet.display import FleetDisplay
    from csi_ota.fleet.runner import (
        Fleet,
        FleetConfig,
        load_credentials,
        register_devices_async,
        run_problems,
        save_credentials,
    )
    from csi_ota.keys import load_public_key

    if register_count is not None:
        if not token:
            raise CsiOtaError("--register needs an admin token (--token or CSI_OTA_TOKEN)")
        if credentials.exists():
            raise CsiOtaError(f"{credentials} exists; remove it or drop --register to reuse it")
        ids = [f"{prefix}{i:05d}" for i in range(register_count)]
        ids += [f"{prefix}esp32_{i:03d}" for i in range(virtual_esp32)]
        verify = str(ca_cert) if ca_cert else None  # the local CA signs both ports' certificate
        creds = asyncio.run(register_devices_async(server, token, ids, verify=verify))
        save_credentials(credentials, creds)
    elif not credentials.exists():
        raise CsiOtaError(f"{credentials}: no such file (use --register N to create devices)")
    mqtt_host, mqtt_port = None, 1883
    if mqtt_address:
        mqtt_host, sep, port_text = mqtt_address.rpartition(":")
        if not sep or not port_text.isdigit() or not mqtt_host:
            raise CsiOtaError(f"--mqtt must be HOST:PORT, got {mqtt_address!r}")
        mqtt_port = int(port_text)
    config = FleetConfig(
        device_urls=list(device_urls),
        credentials=load_credentials(credentials),
        trusted_keys=[load_public_key(p) for p in trusted_keys],
        behaviours=BehaviourMix.parse(behaviours),
        initial_version=initial_version,
        initial_sequence=initial_sequence,
        check_interval_s=parse_duration_s(check_interval),
        heartbeat_interval_s=parse_duration_s(heartbeat_interval),
        time_scale=time_scale,
        duration_s=parse_duration_s(duration),
        rollout_id=rollout_id,
        management_url=server if rollout_id is not None else None,
        admin_token=token,
        seed=seed,
        verify=str(ca_cert) if ca_cert else True,
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        mqtt_devices=mqtt_devices,
        virtual_esp32=virtual_esp32,
        ca_cert=str(ca_cert) if ca_cert else None,
    )
    fleet = Fleet(config)
    if quiet:
        summary = asyncio.run(fleet.run())
    else:
        with FleetDisplay() as display:
            summary = asyncio.run(fleet.run(display.update))
    text = json.dumps(summary, indent=2)
    if summary_path is not None:
        write_atomic(summary_path, (text + "\n").encode())
    click.echo(text)
    problems = run_problems(summary)
    if problems:
        raise CsiOtaError("fleet: " + "; ".join(problems), exit_code=EXIT_OPERATION_FAILED)


COMMANDS = [rollout_group, fleet_command]
