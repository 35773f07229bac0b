"""deploy/docker-compose-ota.yml and the Dockerfile (no Docker engine here: structure and commands are checked)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import yaml

from csi_ota.cli.controller_cli import serve_command
from csi_ota.controller.db import normalise_database_url
from csi_ota.controller.settings import INTEGER_VARIABLES, settings_from_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose-ota.yml"
DOCKERFILE = ROOT / "Dockerfile"
SEED_VARIABLES = {
    "FIRMWARE_STORAGE_PATH",
    "DEVICE_REGISTRY_DB",
    "UPDATE_STRATEGY",
    "FIRMWARE_MAX_SIZE",
    "DEVICE_UPDATE_BATCH_SIZE",
    "ROLLBACK_TIMEOUT_MIN",
    "UPDATE_RETRY_COUNT",
    "HEALTH_CHECK_INTERVAL_SEC",
}


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict) -> dict[str, str]:
    env = service["environment"]
    if isinstance(env, dict):
        return {k: str(v) for k, v in env.items()}
    return dict(item.split("=", 1) for item in env)


def _substitute(value: str) -> str:
    return re.sub(r"\$\{(\w+)(:\?[^}]*)?\}", lambda m: f"example-{m.group(1).lower()}", value)


def _dockerfile_instruction(name: str) -> list[str]:
    lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith(f"{name} ")]
    assert len(lines) == 1, f"one {name} expected"
    return json.loads(lines[0][len(name) + 1 :])


def test_compose_has_controller_postgres_mosquitto_and_no_redis():
    services = _compose()["services"]
    assert set(services) == {"ota-controller", "postgres", "mosquitto"}
    controller = services["ota-controller"]
    assert controller["image"] == "csi-ota-controller:latest"
    assert set(controller["ports"]) == {"8080:8080", "8081:8081"}
    assert "./firmware:/firmware" in controller["volumes"] and "./config:/config" in controller["volumes"]
    assert set(controller["depends_on"]) == {"postgres", "mosquitto"}
    assert "redis" not in COMPOSE.read_text()
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert services["postgres"]["image"].startswith("postgres:")


def test_compose_environment_is_the_seeds_and_valid(tmp_path):
    services = _compose()["services"]
    env = {k: _substitute(v) for k, v in _environment(services["ota-controller"]).items()}
    assert set(env) >= SEED_VARIABLES
    assert env["FIRMWARE_STORAGE_PATH"] == "/firmware"
    assert env["UPDATE_STRATEGY"] == "gradual_rollout"
    assert int(env["FIRMWARE_MAX_SIZE"].split()[0]) == INTEGER_VARIABLES["FIRMWARE_MAX_SIZE"][0] == 1_310_720
    # The controller accepts every value (comments stripped as a shell would not, so compose must not have them inline).
    clean = {k: v.split("#")[0].strip() for k, v in env.items()}
    assert clean == env, "inline comments would become part of the values"
    settings = settings_from_env(tmp_path, environ={**clean, "TRUSTED_KEYS_DIR": ""})
    assert settings.database_url.startswith("postgresql+psycopg://csiota:")
    assert "@postgres:5432/csiota" in settings.database_url
    # PostgreSQL's own credentials match the URL.
    pg_env = {k: _substitute(v) for k, v in _environment(services["postgres"]).items()}
    assert normalise_database_url(clean["DEVICE_REGISTRY_DB"]).endswith(
        f"{pg_env['POSTGRES_USER']}:{pg_env['POSTGRES_PASSWORD']}@postgres:5432/{pg_env['POSTGRES_DB']}"
    )


def test_image_entry_point_runs_csi_ota_serve_with_arguments_it_accepts():
    entrypoint = _dockerfile_instruction("ENTRYPOINT")
    assert entrypoint == ["csi-ota", "serve"]
    for args in (_dockerfile_instruction("CMD"), _compose()["services"]["ota-controller"]["command"]):
        # Parse without converting (the /config files exist only inside the container).
        context = click.Context(serve_command)
        values, extra, _ = serve_command.make_parser(context).parse_args(list(args))
        assert extra == []
        assert values["host"] == "0.0.0.0"
        assert (
            values["tls_cert"] == "/config/tls/server.crt" and values["tls_key"] == "/config/tls/server.key"
        )
        assert "insecure_http" not in values


def test_operations_doc_uses_the_same_command_as_the_image():
    text = (ROOT / "docs" / "operations.md").read_text()
    command = " ".join(_dockerfile_instruction("ENTRYPOINT") + _dockerfile_instruction("CMD"))
    assert command in " ".join(text.split()), f"docs/operations.md should show: {command}"
    assert shlex.split(command)[:2] == ["csi-ota", "serve"]


def test_serve_lines_in_the_readme_and_docs_parse():
    """Every `csi-ota serve …` shown to users is the image's command with options serve accepts."""
    found = 0
    for doc in (ROOT / "README.md", ROOT / "docs" / "operations.md"):
        text = doc.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("#")[0].strip()
            if not line.startswith("csi-ota serve"):
                continue
            argv = [a for a in shlex.split(line)[2:] if a != "…"]
            values, extra, _ = serve_command.make_parser(click.Context(serve_command)).parse_args(argv)
            assert extra == [], (doc.name, line)
            found += 1
    assert found >= 2
