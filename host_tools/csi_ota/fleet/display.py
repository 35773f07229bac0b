"""The live terminal view of `csi-ota fleet`: per-stage progress, device counts, gate decisions."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from csi_ota.fleet.runner import Fleet

MAX_EVENTS_SHOWN = 8


class FleetDisplay:
    """Call :meth:`update` with the running fleet; prints plain event lines when not on a terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.live: Live | None = None
        self.events_printed = 0
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
        )
        self.tasks: dict[int, Any] = {}

    def __enter__(self) -> FleetDisplay:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self, fleet: Fleet) -> None:
        rollout = fleet.rollout
        events = (rollout or {}).get("events", [])
        if self.live is None:
            for event in events[self.events_printed :]:
                self.console.print(f"[{event.get('virtual_time', '')}] {event['message']}")
            self.events_printed = len(events)
            return
        self.live.update(self.render(fleet))

    def render(self, fleet: Fleet) -> Group:
        parts: list[Any] = []
        rollout = fleet.rollout
        if rollout is not None:
            for stage in rollout.get("stages", []):
                counts = stage.get("counts", {})
                done = counts.get("succeeded", 0) + counts.get("failed", 0)
                detail = (
                    f"{stage['state']:<8} ok {counts.get('succeeded', 0)}  failed {counts.get('failed', 0)}  "
                    f"updating {counts.get('offered', 0)}  pending {counts.get('pending', 0)}"
                )
                index = stage["stage"]
                if index not in self.tasks:
                    self.tasks[index] = self.progress.add_task(
                        f"stage {index} ({stage['percent']} %)", total=max(stage["members"], 1), detail=detail
                    )
                self.progress.update(self.tasks[index], completed=done, detail=detail)
            parts.append(self.progress)
            summary = Table.grid(padding=(0, 2))
            counts = rollout.get("counts", {})
            summary.add_row(
                f"rollout {rollout['id']} [bold]{rollout['state']}[/]",
                f"release {rollout.get('release')}",
                f"succeeded {counts.get('succeeded', 0)}",
                f"failed {counts.get('failed', 0)}",
                f"pending {counts.get('pending', 0) + counts.get('offered', 0)}",
                f"rolled back {counts.get('rolled_back', 0)}",
            )
            parts.append(summary)
            events = Table(title="gate decisions", show_header=False, expand=True)
            events.add_column("virtual time", style="dim", no_wrap=True)
            events.add_column("decision")
            for event in rollout.get("events", [])[-MAX_EVENTS_SHOWN:]:
                events.add_row(event.get("virtual_time", "")[:19], event["message"])
            parts.append(events)
        stats = fleet.stats
        versions: dict[str, int] = {}
        for device in fleet.devices:
            versions[device.version] = versions.get(device.version, 0) + 1
        parts.append(
            f"fleet: {len(fleet.devices)} devices  versions {versions}  downloading {stats.downloads_in_flight}  "
            f"requests {sum(stats.requests.values())}  errors {sum(stats.errors.values())}"
        )
        return Group(*parts)
