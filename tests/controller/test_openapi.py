"""docs/openapi.json matches the apps, and a schemathesis run over it finds no 5xx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from controller_helpers import BACKENDS
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from csi_ota.controller.openapi import combined_spec
from services import start_controller

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
MAX_EXAMPLES = 4


def test_committed_openapi_matches_the_apps():
    committed = json.loads(SPEC_PATH.read_text())
    assert committed == combined_spec(), "regenerate with: csi-ota openapi --out docs/openapi.json"


def test_openapi_is_served_on_both_ports(controller):
    import httpx

    management = httpx.get(
        f"{controller.management_url}/openapi.json", headers=controller.admin_headers()
    ).json()
    device = httpx.get(f"{controller.device_url}/openapi.json", verify=False).json()
    assert "/api/releases" in management["paths"] and "/api/ota/status" not in management["paths"]
    assert "/api/ota/status" in device["paths"] and "/api/releases" not in device["paths"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_schemathesis_finds_no_server_errors(backend, backend_url, tmp_path, release_public_key):
    server = start_controller(
        tmp_path / "data", database_url=backend_url(backend), trusted_keys=[release_public_key]
    )
    try:
        with server.management_client() as mgmt:
            device_token = mgmt.post("/api/devices", json={"device_id": "fuzzed"}).json()["token"]
            fuzz_admin = mgmt.post("/api/admin/users", json={"name": "fuzzer", "role": "admin"}).json()[
                "token"
            ]
        raw = json.loads(SPEC_PATH.read_text())
        schema = schemathesis.openapi.from_dict(raw)
        failures: list[str] = []
        calls = 0

        def run_operation(operation, base_url: str, token: str) -> None:
            nonlocal calls
            strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
                GenerationMode.NEGATIVE
            )

            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def exercise(case):
                nonlocal calls
                headers = dict(case.headers or {})
                headers["Authorization"] = f"Bearer {token}"
                response = case.call(base_url=base_url, headers=headers, timeout=30, verify=False)
                calls += 1
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")

            exercise()

        for result in schema.get_all_operations():
            operation = result.ok()
            is_device = "servers" in raw["paths"][operation.path]
            if is_device:
                run_operation(operation, server.device_url, device_token)
            else:
                run_operation(operation, server.management_url, fuzz_admin)
        assert calls >= len(raw["paths"])
        assert failures == [], f"{failures[:10]}\n{server.log()}"
    finally:
        server.stop()
