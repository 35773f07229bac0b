"""`csi-ota serve`: both ports, two uvicorn servers on one asyncio loop, plus device workers.

Start-up order: validate settings (exit 2 on a bad variable), bind both ports, migrate the
registry (``alembic upgrade heads``) and (re)create its change triggers, fork the device
workers (``--workers``, csi_ota.controller.workers), remove half-written uploads, load the
device cache (csi_ota.controller.device_cache), build the apps (the device app behind the
hot path, csi_ota.controller.hot_path; the management app gets the rollout engine via
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
from csi_ota.controller.change_feed import ChangeFollower, ChangeSignal, install_triggers, watch_sessions
from csi_ota.controller.context import ControllerContext, build_context
from csi_ota.controller.db import make_engine, safe_url, upgrade_database
from csi_ota.controller.device_api import create_device_app
from csi_ota.controller.device_cache import DeviceCache
from csi_ota.controller.download_slots import DownloadSlots, SharedDownloadTable
from csi_ota.controller.fast_http import fast_protocol_class
from csi_ota.controller.hot_path import HotPath
from csi_ota.controller.limits import (
    ServerLimits,
    fit_to_fd_limit,
    guarded_protocol_class,
    install_log_rate_limit,
)
from csi_ota.controller.management_api import create_management_app
from csi_ota.controller.settings import ControllerSettings
from csi_ota.controller.workers import MAX_WORKERS, SharedCounts, WorkerMetrics, fork_worker, stop_workers
from csi_ota.controller.write_batcher import WriteBatcher
from csi_ota.errors import CsiOtaError

CSI_FLUSH_INTERVAL_S = 1.0
LISTEN_BACKLOG = 2048
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
    bind_socket(host, port).close()


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket on ``host:port``; CsiOtaError (exit 1) if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise CsiOtaError(f"cannot listen on {host}:{port}: {exc.strerror}", exit_code=1) from None
    sock.set_inheritable(True)
    return sock


def bind_device_sockets(host: str, port: int, workers: int) -> list[socket.socket]:
    """One listening socket per device process on the same port.

    With several workers each gets its own socket in one SO_REUSEPORT group (bound here, before
    the fork, by the same user): the kernel spreads new connections evenly over the workers. A
    single shared socket let whichever process woke first accept every queued connection, and a
    long-lived device connection stays where it was accepted (one worker carried twice the other's
    load in the open-loop benchmark).
    """
    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        return [bind_socket(host, port)] * max(1, workers)
    first = bind_socket(host, port, reuse_port=True)
    sockets = [first]
    try:
        for _ in range(workers - 1):
            sockets.append(bind_socket(host, first.getsockname()[1], reuse_port=True))
    except CsiOtaError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


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


async def _run_servers(servers: list[tuple[uvicorn.Server, socket.socket]]) -> None:
    loop = asyncio.get_running_loop()

    def request_exit() -> None:
        for server, _sock in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, request_exit)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    request_exit()  # one server stopped: stop the other too
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            raise task.exception()
    if not all(server.started for server, _sock in servers):
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


def _uvicorn_config(
    app, listen: ListenOptions, limits: ServerLimits, *, tls: bool, protocol_base: type | None = None
) -> uvicorn.Config:
    """One port's server: limits (header timeout, connection caps) on uvicorn's protocol class.

    That class is uvicorn's "auto" one (httptools, a dependency, whose transport the hot path
    sends firmware on with sendfile(2)), or ``protocol_base``: on the device port, the
    subclass that answers version checks itself (csi_ota.controller.fast_http).
    """
    kwargs = limits.uvicorn_kwargs()  # one call per port: each port counts its own connections
    if protocol_base is not None:
        kwargs["http"] = guarded_protocol_class(limits, protocol_base)
    return uvicorn.Config(
        app,
        host=listen.host,
        log_level=listen.log_level,
        access_log=False,
        loop="asyncio",
        ssl_certfile=str(listen.tls_cert) if tls else None,
        ssl_keyfile=str(listen.tls_key) if tls else None,
        **kwargs,
    )


@dataclass
class _DevicePlane:
    """What serves the device port in one process: the hot path over the FastAPI app."""

    app: HotPath
    cache: DeviceCache
    batcher: WriteBatcher
    follower: ChangeFollower

    def stop(self) -> None:
        self.follower.stop()
        self.batcher.stop()
        self.batcher.join(timeout=5)


def _device_plane(
    ctx: ControllerContext,
    device_app: FastAPI,
    signal_: ChangeSignal,
    shared_slots: SharedDownloadTable | None = None,
) -> _DevicePlane:
    # Download slots count host-wide with --workers N (a device's connections land on any worker).
    device_app.state.download_slots = DownloadSlots(ctx.settings.downloads_per_device, shared_slots)
    cache = DeviceCache(ctx.engine, ctx.settings.firmware_dir, signal_)
    watch_sessions(ctx.session_factory, signal_, on_commit=lambda: None)
    cache.load()
    batcher = WriteBatcher(ctx.engine, cache, ctx.transaction_lock)
    batcher.start()
    follower = ChangeFollower(ctx.engine, cache.catch_up)
    follower.start()
    return _DevicePlane(HotPath(device_app, ctx, cache, batcher), cache, batcher, follower)


def _device_config(plane: _DevicePlane, listen: ListenOptions, limits: ServerLimits) -> uvicorn.Config:
    base = fast_protocol_class(plane.app)
    return _uvicorn_config(plane.app, listen, limits, tls=not listen.insecure_http, protocol_base=base)


def _start_flusher(ctx: ControllerContext) -> tuple[threading.Thread, threading.Event]:
    stop_flusher = threading.Event()
    flusher = threading.Thread(target=_flush_loop, args=(ctx, stop_flusher), name="csi-flush", daemon=True)
    flusher.start()
    return flusher, stop_flusher


def _run_device_worker(
    settings: ControllerSettings,
    listen: ListenOptions,
    device_socket: socket.socket,
    signal_: ChangeSignal,
    counts: SharedCounts,
    index: int,
    limits: ServerLimits,
    shared_slots: SharedDownloadTable | None = None,
) -> None:
    """A forked device worker: the device port only, counters and download slots in shared memory."""
    ctx = build_context(settings, metrics=WorkerMetrics(counts, index))
    plane = _device_plane(ctx, create_device_app(ctx), signal_, shared_slots)
    flusher, stop_flusher = _start_flusher(ctx)
    config = _device_config(plane, listen, limits)
    install_log_rate_limit(limits.log_records_per_minute)
    try:
        asyncio.run(_run_servers([(_Server(config), device_socket)]))
    finally:
        plane.stop()
        stop_flusher.set()
        flusher.join(timeout=5)
        ctx.close()


def serve(
    settings: ControllerSettings,
    listen: ListenOptions,
    mqtt: MqttOptions | None = None,
    limits: ServerLimits | None = None,
    *,
    workers: int = 1,
) -> None:
    """Runs the controller until SIGTERM/SIGINT (``workers`` processes on the device port)."""
    check_listen_options(listen)
    limits = fit_to_fd_limit(limits or ServerLimits(), ports=2)
    if workers > 1:  # every worker counts its own connections: share the caps out so the host keeps them
        limits = dataclasses.replace(
            limits,
            max_connections=max(1, -(-limits.max_connections // workers)),
            max_connections_per_client=max(1, -(-limits.max_connections_per_client // workers)),
        )
    if not 1 <= workers <= MAX_WORKERS:
        raise CsiOtaError(f"--workers must be 1..{MAX_WORKERS}")
    device_sockets = bind_device_sockets(listen.host, listen.device_port, workers)
    management_socket = bind_socket(listen.host, listen.management_port)
    logging.basicConfig(level=getattr(logging, listen.log_level.upper(), logging.WARNING))
    upgrade_database(settings.database_url)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        install_triggers(engine)
    finally:
        engine.dispose()
    signal_ = ChangeSignal(shared=workers > 1)
    counts = SharedCounts(workers)
    shared_slots = SharedDownloadTable() if workers > 1 else None

    # Fork the device workers before this process starts any thread or opens any connection.
    def run_worker(index: int) -> None:
        management_socket.close()  # the first process alone serves the management port
        for other in device_sockets:
            if other is not device_sockets[index]:
                other.close()  # the other workers' sockets (SO_REUSEPORT)
        _run_device_worker(
            settings, listen, device_sockets[index], signal_, counts, index, limits, shared_slots
        )

    worker_pids = [fork_worker(lambda i=index: run_worker(i)) for index in range(1, workers)]
    for other in device_sockets:
        if other is not device_sockets[0]:
            other.close()  # each worker holds its own
    try:
        _serve_primary(
            settings,
            listen,
            mqtt,
            limits,
            device_sockets[0],
            management_socket,
            signal_,
            counts,
            workers,
            shared_slots,
        )
    finally:
        stop_workers(worker_pids)


def _serve_primary(
    settings: ControllerSettings,
    listen: ListenOptions,
    mqtt: MqttOptions | None,
    limits: ServerLimits,
    device_socket: socket.socket,
    management_socket: socket.socket,
    signal_: ChangeSignal,
    counts: SharedCounts,
    workers: int,
    shared_slots: SharedDownloadTable | None = None,
) -> None:
    ctx = build_context(settings)
    if workers > 1:
        ctx.metrics.before_scrape(lambda: counts.absorb_into(ctx.metrics))
    removed = ctx.store.clean_incoming()
    if removed:
        log.warning("removed %d half-written upload(s) from %s", removed, ctx.store.incoming)
    mqtt = _sync_mqtt_files(ctx, mqtt)
    device_app, management_app = create_apps(ctx)
    plane = _device_plane(ctx, device_app, signal_, shared_slots)
    device_config = _device_config(plane, listen, limits)
    # Admin tokens travel on the management port: TLS unless explicitly refused.
    management_config = _uvicorn_config(management_app, listen, limits, tls=listen.management_tls)
    install_log_rate_limit(limits.log_records_per_minute)
    servers = [(_Server(device_config), device_socket), (_Server(management_config), management_socket)]
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
    flusher, stop_flusher = _start_flusher(ctx)
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
        f"registry {safe_url(settings.database_url)}, "
        f"{workers} worker process{'es' if workers > 1 else ''}, {len(plane.cache.by_id)} devices cached",
        flush=True,
    )
    try:
        asyncio.run(_run_servers(servers))
    except SystemExit as exc:  # uvicorn exits when a socket cannot be opened
        raise CsiOtaError(
            f"the server stopped at start-up (exit {exc.code}); is a port in use?", exit_code=1
        ) from None
    finally:
        plane.stop()
        stop_flusher.set()
        flusher.join(timeout=5)
        if bridge is not None:
            bridge.stop()
        ctx.close()
