"""`csi-ota serve`: both ports in one process — two uvicorn servers on one asyncio loop.

Start-up order: validate settings (exit 2 on a bad variable), migrate the
registry (``alembic upgrade heads``), remove half-written uploads, build the
apps (the management app gets the rollout engine via
``csi_ota.controller.rollout.attach`` when that module exists), start the MQTT
bridge and the CSI counter flusher, then listen. SIGTERM/SIGINT stop both
servers gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from csi_ota.controller import DEFAULT_MQTT_SHARE_GROUP
from csi_ota.controller.context import ControllerContext, build_context
from csi_ota.controller.db import safe_url, upgrade_database
from csi_ota.controller.device_api import create_device_app
from csi_ota.controller.limits import ServerLimits, fit_to_fd_limit, install_log_rate_limit
from csi_ota.controller.management_api import create_management_app
from csi_ota.controller.settings import ControllerSettings
from csi_ota.errors import CsiOtaError

CSI_FLUSH_INTERVAL_S = 1.0
log = logging.getLogger("csi_ota.serve")


@dataclass(frozen=True)
class ListenOptions:
    host: str = "127.0.0.1"
    device_port: int = 8080
    management_port: int = 8081
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure_http: bool = False  # both ports plain HTTP (tests, behind a TLS proxy)
    log_level: str = "warning"
    # TLS on the device port but plain HTTP on the management port (a TLS proxy in front of 8081).
    insecure_management_http: bool = False

    @property
    def management_tls(self) -> bool:
        return not (self.insecure_http or self.insecure_management_http)


@dataclass(frozen=True)
class MqttOptions:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    share_group: str = DEFAULT_MQTT_SHARE_GROUP  # "" = plain subscriptions (one controller process)
    tls_ca: Path | None = None  # MQTT over TLS (port 8883), verified against this CA


def attach_rollout(app: FastAPI) -> bool:
    """Calls csi_ota.controller.rollout.attach(app) if the rollout engine is installed."""
    try:
        module = importlib.import_module("csi_ota.controller.rollout")
    except ModuleNotFoundError as exc:
        if exc.name == "csi_ota.controller.rollout":
            return False
        raise
    attach = getattr(module, "attach", None)
    if attach is None:
        return False
    attach(app)
    return True


def attach_webui(app: FastAPI) -> None:
    """The management web UI under /ui (csi_ota.controller.webui)."""
    from csi_ota.controller import webui

    webui.attach(app)


def create_apps(ctx: ControllerContext) -> tuple[FastAPI, FastAPI]:
    device_app = create_device_app(ctx)
    management_app = create_management_app(ctx)
    attach_rollout(management_app)
    attach_webui(management_app)
    return device_app, management_app


def check_port_free(host: str, port: int) -> None:
    """Raises CsiOtaError (exit 1) if ``host:port`` cannot be bound now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CsiOtaError(f"cannot listen on {host}:{port}: {exc.strerror}", exit_code=1) from None


def check_listen_options(options: ListenOptions) -> None:
    if options.device_port == options.management_port:
        raise CsiOtaError("the device and management ports must differ")
    if options.insecure_http and (options.tls_cert or options.tls_key):
        raise CsiOtaError("--insecure-http and --tls-cert/--tls-key exclude each other")
    if options.insecure_http and options.insecure_management_http:
        raise CsiOtaError("--insecure-http already makes both ports plain; drop --insecure-management-http")
    if not options.insecure_http:
        if not (options.tls_cert and options.tls_key):
            raise CsiOtaError(
                "the device port needs --tls-cert and --tls-key (from `csi-ota certs`), "
                "or --insecure-http to serve plain HTTP"
            )
        for path in (options.tls_cert, options.tls_key):
            if not Path(path).is_file():
                raise CsiOtaError(f"{path}: no such file")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to run_servers (two servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _flush_loop(ctx: ControllerContext, stop: threading.Event) -> None:
    while not stop.wait(CSI_FLUSH_INTERVAL_S):
        try:
            ctx.flush_csi_counters()
        except Exception:
            log.exception("flushing CSI counters failed")


async def _run_servers(servers: list[uvicorn.Server]) -> None:
    loop = asyncio.get_running_loop()

    def request_exit() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, request_exit)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    request_exit()  # one server stopped (e.g. its port was taken): stop the other too
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            raise task.exception()
    if not all(server.started for server in servers):
        raise CsiOtaError("a port could not be opened (already in use?)", exit_code=1)


def _sync_mqtt_files(ctx: ControllerContext, mqtt: MqttOptions | None) -> MqttOptions | None:
    """With --mqtt-acl-dir: bring Mosquitto's files up to date now; the bridge uses controller.password."""
    if ctx.mqtt_sync is None:
        return mqtt
    files = ctx.mqtt_sync.sync(ctx)
    if mqtt is not None and mqtt.password is None:
        mqtt = dataclasses.replace(
            mqtt,
            username=mqtt.username or ctx.settings.mqtt_controller_user,
            password=files.controller_password_file.read_text().strip(),
        )
    return mqtt


def serve(
    settings: ControllerSettings,
    listen: ListenOptions,
    mqtt: MqttOptions | None = None,
    limits: ServerLimits | None = None,
) -> None:
    """Runs the controller until SIGTERM/SIGINT."""
    check_listen_options(listen)
    for port in (listen.device_port, listen.management_port):
        check_port_free(listen.host, port)
    logging.basicConfig(level=getattr(logging, listen.log_level.upper(), logging.WARNING))
    upgrade_database(settings.database_url)
    ctx = build_context(settings)
    removed = ctx.store.clean_incoming()
    if removed:
        log.warning("removed %d half-written upload(s) from %s", removed, ctx.store.incoming)
    mqtt = _sync_mqtt_files(ctx, mqtt)
    device_app, management_app = create_apps(ctx)
    limits = fit_to_fd_limit(limits or ServerLimits(), ports=2)
    common = {"log_level": listen.log_level, "access_log": False}
    device_config = uvicorn.Config(
        device_app,
        host=listen.host,
        port=listen.device_port,
        ssl_certfile=None if listen.insecure_http else str(listen.tls_cert),
        ssl_keyfile=None if listen.insecure_http else str(listen.tls_key),
        **common,
        **limits.uvicorn_kwargs(),  # one call per port: each port counts its own connections
    )
    management_config = uvicorn.Config(  # admin tokens travel here: TLS unless explicitly refused
        management_app,
        host=listen.host,
        port=listen.management_port,
        ssl_certfile=str(listen.tls_cert) if listen.management_tls else None,
        ssl_keyfile=str(listen.tls_key) if listen.management_tls else None,
        **common,
        **limits.uvicorn_kwargs(),
    )
    install_log_rate_limit(limits.log_records_per_minute)
    servers = [_Server(device_config), _Server(management_config)]
    bridge = None
    if mqtt is not None:
        from csi_ota.controller.mqtt_bridge import MqttBridge

        bridge = MqttBridge(
            ctx,
            mqtt.host,
            mqtt.port,
            username=mqtt.username,
            password=mqtt.password,
            share_group=mqtt.share_group,
            max_csi_bytes=settings.max_csi_body_bytes,
            tls_ca=None if mqtt.tls_ca is None else str(mqtt.tls_ca),
        )
        bridge.start()
    stop_flusher = threading.Event()
    flusher = threading.Thread(target=_flush_loop, args=(ctx, stop_flusher), name="csi-flush", daemon=True)
    flusher.start()
    if not ctx.trusted_keys:
        print(
            "csi-ota serve: warning: no trusted release keys (--trusted-key / TRUSTED_KEYS_DIR); "
            "every release upload will be refused",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"csi-ota serve: devices on {'http' if listen.insecure_http else 'https'}://{listen.host}:{listen.device_port}, "
        f"management on {'https' if listen.management_tls else 'http'}://{listen.host}:{listen.management_port}, "
        f"registry {safe_url(settings.database_url)}",
        flush=True,
    )
    try:
        asyncio.run(_run_servers(servers))
    except SystemExit as exc:  # uvicorn exits when a socket cannot be opened
        raise CsiOtaError(
            f"the server stopped at start-up (exit {exc.code}); is a port in use?", exit_code=1
        ) from None
    finally:
        stop_flusher.set()
        flusher.join(timeout=5)
        if bridge is not None:
            bridge.stop()
        ctx.close()
