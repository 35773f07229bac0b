"""Real services on loopback for the tests and benchmarks: PostgreSQL, Mosquitto, nginx, the controller.

Every server binds 127.0.0.1 on a free port, lives in a temporary directory,
and is stopped (and its directory removed) when its context manager exits.
Every wait is bounded; a server that does not come up raises ServiceError
with the tail of its log.

Running as root (CI containers), PostgreSQL runs as the ``postgres`` user
(it refuses root) and Mosquitto/nginx keep root instead of dropping to a
user that cannot read the temporary directories.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"
PG_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
PG_SUPERUSER = "postgres"
START_TIMEOUT_S = 90.0  # bounded; a fresh controller start (imports, migrations) on a loaded 2-core machine
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_CHARS = 3000


class ServiceError(RuntimeError):
    """A test service failed to start or stop."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout_s: float = START_TIMEOUT_S, process=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceError(f"process exited with code {process.returncode} before {host}:{port} opened")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(POLL_INTERVAL_S)
    raise ServiceError(f"{host}:{port} did not open within {timeout_s:.0f} s")


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return "(no log)"


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _stop_process(process: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class PostgresServer:
    host: str
    port: int
    data_dir: Path
    socket_dir: Path
    user: str = PG_SUPERUSER

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3 driver) for ``database``."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Creates an empty database and returns its URL."""
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_postgres_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", PG_SUPERUSER, "--", *argv] if _running_as_root() else argv


@contextlib.contextmanager
def postgres_server(*, fsync: bool = False) -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL 15 cluster on 127.0.0.1 (trust auth for the ``postgres`` user)."""
    if not (PG_BIN_DIR / "initdb").exists():
        raise ServiceError(f"PostgreSQL binaries not found in {PG_BIN_DIR} (run scripts/setup.sh)")
    base = Path(tempfile.mkdtemp(prefix="csi-ota-pg-"))
    data_dir, socket_dir, log_path = base / "data", base / "sock", base / "postgres.log"
    socket_dir.mkdir()
    if _running_as_root():
        owner = pwd.getpwnam(PG_SUPERUSER)
        for path in (base, socket_dir):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    try:
        subprocess.run(
            _as_postgres_user(
                [str(PG_BIN_DIR / "initdb"), "-D", str(data_dir), "-A", "trust", "-U", PG_SUPERUSER]
                + ["-E", "UTF8", "--no-sync", "--no-instructions"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = (
            f"-p {port} -k {socket_dir} -c listen_addresses={LOOPBACK} -c fsync={'on' if fsync else 'off'}"
        )
        options += " -c max_connections=300 -c synchronous_commit=on"
        result = subprocess.run(
            _as_postgres_user(
                [str(PG_BIN_DIR / "pg_ctl"), "-D", str(data_dir), "-l", str(log_path), "-o", options]
                + ["-w", "-t", str(int(START_TIMEOUT_S)), "start"]
            ),
            capture_output=True,
            timeout=START_TIMEOUT_S + 10,
        )
        if result.returncode != 0:
            raise ServiceError(f"PostgreSQL did not start: {result.stderr.decode()}\n{_log_tail(log_path)}")
        yield PostgresServer(LOOPBACK, port, data_dir, socket_dir)
    except subprocess.CalledProcessError as exc:
        raise ServiceError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
    finally:
        if (data_dir / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres_user(
                    [str(PG_BIN_DIR / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"]
                ),
                capture_output=True,
                timeout=STOP_TIMEOUT_S + 10,
            )
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- Mosquitto


@dataclass
class MosquittoBroker:
    host: str
    port: int
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return _log_tail(self.log_path)


@contextlib.contextmanager
def mosquitto_broker(
    *,
    password_file: Path | None = None,
    acl_file: Path | None = None,
    port: int | None = None,
    extra_config: list[str] = (),
) -> Iterator[MosquittoBroker]:
    """Mosquitto 2 on 127.0.0.1; anonymous unless a password file (and ACL file) is given.

    ``extra_config``: more mosquitto.conf lines (e.g. the shipped message_size_limit).
    """
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    base = Path(tempfile.mkdtemp(prefix="csi-ota-mqtt-"))
    port = port or free_port()
    lines = [f"listener {port} {LOOPBACK}", "persistence false", "log_dest stderr", "log_type error"]
    lines.append("log_type warning")
    if _running_as_root():
        lines.append("user root")
    if password_file is not None:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
    else:
        lines.append("allow_anonymous true")
    if acl_file is not None:
        lines.append(f"acl_file {acl_file}")
    lines += list(extra_config)
    config = base / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    log_path = base / "mosquitto.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port(LOOPBACK, port, process=process)
        except ServiceError as exc:
            raise ServiceError(f"Mosquitto: {exc}\n{_log_tail(log_path)}") from exc
        yield MosquittoBroker(LOOPBACK, port, process, log_path)
    finally:
        _stop_process(process)
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- nginx


@dataclass
class NginxServer:
    host: str
    port: int
    root: Path
    process: subprocess.Popen

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextlib.contextmanager
def nginx_server(
    root: Path,
    *,
    worker_processes: int = 1,
    extra_server_config: str = "",
    extra_http_config: str = "",
    listen_options: str = "",
    port: int | None = None,
) -> Iterator[NginxServer]:
    """Debian's nginx serving ``root`` on 127.0.0.1 (sendfile, keep-alive, no access log).

    ``listen_options`` go on the listen line (``sndbuf=32k``: a slow network's socket buffer).
    """
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    base = Path(tempfile.mkdtemp(prefix="csi-ota-nginx-"))
    port = port or free_port()
    user_line = "user root;" if _running_as_root() else ""
    config = f"""
{user_line}
daemon off;
worker_processes {worker_processes};
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {base}/client_body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    uwsgi_temp_path {base}/uwsgi;
    scgi_temp_path {base}/scgi;
    {extra_http_config}
    server {{
        listen {LOOPBACK}:{port} {listen_options};
        root {root};
        {extra_server_config}
    }}
}}
"""
    config_path = base / "nginx.conf"
    config_path.write_text(config)
    log_path = base / "stderr.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, "-c", str(config_path), "-p", str(base), "-e", str(base / "error.log")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_for_port(LOOPBACK, port, process=process)
        except ServiceError as exc:
            raise ServiceError(
                f"nginx: {exc}\n{_log_tail(log_path)}\n{_log_tail(base / 'error.log')}"
            ) from exc
        yield NginxServer(LOOPBACK, port, Path(root), process)
    finally:
        _stop_process(process)
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- the controller


@dataclass
class ControllerServer:
    """A running `csi-ota serve` process and how to reach it."""

    process: subprocess.Popen
    device_url: str
    management_url: str
    admin_token: str
    data_dir: Path
    firmware_dir: Path
    database_url: str
    log_path: Path
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def management_client(self, **kwargs) -> httpx.Client:
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("verify", False)  # https only with management_tls=True (a test CA)
        return httpx.Client(base_url=self.management_url, headers=self.admin_headers(), **kwargs)

    def device_client(self, token: str, **kwargs) -> httpx.Client:
        kwargs.setdefault("verify", False)
        kwargs.setdefault("timeout", 30)
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.device_url, headers=headers, **kwargs)

    def log(self) -> str:
        return _log_tail(self.log_path)

    def kill9(self) -> None:
        """SIGKILL, as a power cut would: no cleanup runs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        _stop_process(self.process)


def _wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"csi-ota serve exited with code {process.returncode}:\n{_log_tail(log_path)}")
        try:
            response = httpx.get(f"{url}/healthz", timeout=2, verify=False)
            if response.status_code == 200:
                return
            last_error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last_error = str(exc)
        time.sleep(POLL_INTERVAL_S * 2)
    raise ServiceError(
        f"csi-ota serve not healthy at {url} within {timeout_s:.0f} s ({last_error}):\n{_log_tail(log_path)}"
    )


def start_controller(
    data_dir: Path,
    *,
    database_url: str | None = None,
    trusted_keys: list[Path] = (),
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    management_tls: bool = False,
    mqtt: MosquittoBroker | tuple[str, int] | None = None,
    mqtt_username: str | None = None,
    mqtt_password: str | None = None,
    extra_env: dict[str, str] | None = None,
    extra_args: list[str] = (),
    admin_token: str | None = None,
    device_port: int | None = None,
    management_port: int | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> ControllerServer:
    """Starts `csi-ota serve` as a subprocess on loopback and waits until both ports answer.

    The first call on a data directory/database creates an ``admin`` user and
    returns its token; pass ``admin_token`` back in to restart on the same data.
    Without ``tls_cert`` both ports are plain HTTP (``--insecure-http``); with it the device port
    is HTTPS and the management port plain (``--insecure-management-http``) unless ``management_tls``.
    """
    from csi_ota.controller import admin as admin_lib
    from csi_ota.controller.db import default_sqlite_url

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    firmware_dir = data_dir / "firmware"
    database_url = database_url or default_sqlite_url(data_dir)
    if admin_token is None:
        admin_token = admin_lib.bootstrap_admin(database_url, name="admin", role="admin")
    device_port = device_port or free_port()
    management_port = management_port or free_port()
    argv = [sys.executable, "-m", "csi_ota", "serve", "--host", LOOPBACK]
    argv += ["--device-port", str(device_port), "--management-port", str(management_port)]
    argv += ["--data-dir", str(data_dir)]
    if tls_cert is not None:
        argv += ["--tls-cert", str(tls_cert), "--tls-key", str(tls_key)]
        if not management_tls:  # the tests' admin clients talk plain HTTP on loopback, deliberately
            argv.append("--insecure-management-http")
    else:
        argv.append("--insecure-http")
    for key in trusted_keys:
        argv += ["--trusted-key", str(key)]
    if mqtt is not None:
        mqtt_host, mqtt_port = (mqtt.host, mqtt.port) if isinstance(mqtt, MosquittoBroker) else mqtt
        argv += ["--mqtt-host", mqtt_host, "--mqtt-port", str(mqtt_port)]
        if mqtt_username:
            argv += ["--mqtt-username", mqtt_username]
    argv += list(extra_args)
    env = dict(os.environ)
    env.update(
        {
            "DEVICE_REGISTRY_DB": database_url,
            "FIRMWARE_STORAGE_PATH": str(firmware_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if mqtt_password is not None:
        env["MQTT_PASSWORD"] = mqtt_password
    env.update(extra_env or {})
    log_path = data_dir / f"serve-{device_port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    scheme = "https" if tls_cert is not None else "http"
    server = ControllerServer(
        process=process,
        device_url=f"{scheme}://{LOOPBACK}:{device_port}",
        management_url=f"{'https' if tls_cert is not None and management_tls else 'http'}://{LOOPBACK}:{management_port}",
        admin_token=admin_token,
        data_dir=data_dir,
        firmware_dir=firmware_dir,
        database_url=database_url,
        log_path=log_path,
        argv=argv,
        env=env,
    )
    try:
        _wait_healthy(server.management_url, process, log_path, timeout_s)
        _wait_healthy(server.device_url, process, log_path, timeout_s)
    except BaseException:
        server.kill9()
        raise
    return server


@contextlib.contextmanager
def controller_server(data_dir: Path, **kwargs) -> Iterator[ControllerServer]:
    """`csi-ota serve` for the duration of the block (see :func:`start_controller`)."""
    server = start_controller(data_dir, **kwargs)
    try:
        yield server
    finally:
        server.stop()
