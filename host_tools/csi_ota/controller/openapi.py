"""The committed OpenAPI document (docs/openapi.json): both APIs in one spec.

Device paths carry a path-level ``servers`` entry for port 8080; the rest is
the management API on port 8081. ``csi-ota openapi`` prints it; a test keeps
the committed file equal to it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from csi_ota.controller.context import build_context
from csi_ota.controller.settings import ControllerSettings

DEVICE_SERVER = {"url": "https://localhost:8080", "description": "device API (port 8080)"}
MANAGEMENT_SERVER = {"url": "http://localhost:8081", "description": "management API (port 8081)"}


def build_specs() -> tuple[dict[str, Any], dict[str, Any]]:
    """(device spec, management spec) from the real apps (rollout routes included if installed)."""
    from csi_ota.controller.server import create_apps

    with tempfile.TemporaryDirectory(prefix="csi-ota-openapi-") as tmp:
        settings = ControllerSettings(
            data_dir=Path(tmp), firmware_dir=Path(tmp) / "firmware", database_url=f"sqlite:///{tmp}/spec.db"
        )
        ctx = build_context(settings, pool_size=1)
        try:
            device_app, management_app = create_apps(ctx)
            return device_app.openapi(), management_app.openapi()
        finally:
            ctx.close()


def combined_spec() -> dict[str, Any]:
    device, management = build_specs()
    spec = dict(management)
    spec["info"] = {
        "title": "csi-ota controller",
        "version": management["info"]["version"],
        "description": "Device API on port 8080 (paths with their own `servers`) and management API on port 8081.",
    }
    spec["servers"] = [MANAGEMENT_SERVER]
    paths = dict(management["paths"])
    for path, item in device["paths"].items():
        if path in paths:  # /healthz exists on both ports
            continue
        paths[path] = {**item, "servers": [DEVICE_SERVER]}
    spec["paths"] = dict(sorted(paths.items()))
    schemas = dict(management.get("components", {}).get("schemas", {}))
    schemas.update(device.get("components", {}).get("schemas", {}))
    spec["components"] = {**management.get("components", {}), "schemas": dict(sorted(schemas.items()))}
    return spec


def spec_text() -> str:
    return json.dumps(combined_spec(), indent=2, sort_keys=False) + "\n"
