"""Connection limits of `csi-ota serve` (issue 12 H4): one place, whatever the process model.

uvicorn (0.55, httptools or h11) has no header timeout: its keep-alive timer runs only after a
response and is cancelled by the next byte, so a client that sends half a request line holds
its connection (and a file descriptor) forever; 1,009 such TLS connections made the controller
log "Too many open files" 1.47 M times while both ports stopped answering. ServerLimits adds,
at the protocol level (a subclass of the HTTP protocol class uvicorn would use, so it works with
either parser):

- a header timeout: the request line and headers must arrive within ``header_timeout_s`` of a
  connection's first byte (or of its opening), and stay under ``max_header_bytes``;
- a body idle timeout: a request body that stops arriving for ``header_timeout_s`` (while the
  server is ready to read it) closes the connection — a declared Content-Length never sent
  held a connection for good, as half a header did;
- a total connection cap per port and a cap per client address, enforced when a connection is
  made (over the cap: closed at once, counted, logged at most once a minute);
- the keep-alive idle timeout and uvicorn's ``limit_concurrency``;
- :func:`install_log_rate_limit`, which collapses repeated log records (accept() errors, caps hit)
  to a few per minute with a count of what was dropped.

Per-device concurrent downloads are capped in the device app (DownloadSlots).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

log = logging.getLogger("csi_ota.limits")


@dataclass(frozen=True)
class ServerLimits:
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 30.0
    max_header_bytes: int = 16 * 1024
    max_connections: int = 4000  # per listening port (lowered to fit RLIMIT_NOFILE)
    # Per client IP address and port: generous, since a site's sensors may share one NAT address
    # (raise it behind a reverse proxy, where every client has the proxy's address).
    max_connections_per_client: int = 1000
    log_records_per_minute: int = 10  # per logger and message template

    def uvicorn_kwargs(self) -> dict:
        """Keyword arguments for uvicorn.Config (one server = one port)."""
        return {
            "timeout_keep_alive": self.keep_alive_timeout_s,
            "h11_max_incomplete_event_size": self.max_header_bytes,
            "limit_concurrency": self.max_connections + 1,  # the guard refuses first; 503 is a backstop
            "http": guarded_protocol_class(self),
        }


class ConnectionCounter:
    """Open connections of one port: total and per client address."""

    def __init__(self) -> None:
        self.total = 0
        self.by_client: Counter[str] = Counter()
        self.refused = 0
        self.timed_out = 0

    def admit(self, client: str, limits: ServerLimits) -> bool:
        if (
            self.total >= limits.max_connections
            or self.by_client[client] >= limits.max_connections_per_client
        ):
            self.refused += 1
            return False
        self.total += 1
        self.by_client[client] += 1
        return True

    def release(self, client: str) -> None:
        self.total -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]


def guarded_protocol_class(limits: ServerLimits, base: type | None = None) -> type:
    """A subclass of uvicorn's HTTP protocol class (``base``, default "auto") with H4's guards.

    Each call makes one class with its own ConnectionCounter: use one per listening port.
    """
    base = base or import_from_string(HTTP_PROTOCOLS["auto"])
    counter = ConnectionCounter()

    class GuardedHttpProtocol(base):  # type: ignore[misc, valid-type]
        connection_counter = counter

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            self._guard_client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
            self._guard_admitted = counter.admit(self._guard_client, limits)
            self._guard_timer: asyncio.TimerHandle | None = None
            self._guard_body_timer: asyncio.TimerHandle | None = None
            self._guard_body_at = 0.0
            self._guard_cycle = None
            self._guard_header_bytes = 0
            super().connection_made(transport)
            if not self._guard_admitted:
                log.warning(
                    "connection cap reached (%d open, %d from %s): refusing connections",
                    counter.total,
                    counter.by_client[self._guard_client],
                    self._guard_client,
                )
                transport.abort()
                return
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            if getattr(self, "_guard_body_timer", None) is not None:
                self._guard_body_timer.cancel()
                self._guard_body_timer = None
            if getattr(self, "_guard_admitted", False):
                self._guard_admitted = False
                counter.release(self._guard_client)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            waiting = self._waiting_for_headers()
            super().data_received(data)
            if self.transport.is_closing():
                return
            cycle = getattr(self, "cycle", None)
            if cycle is not None and getattr(cycle, "more_body", False) and not cycle.response_complete:
                self._guard_body_at = self.loop.time()  # a body is arriving
                if self._guard_body_timer is None:
                    self._guard_body_timer = self.loop.call_later(limits.header_timeout_s, self._body_timeout)
            if cycle is not None and cycle is not self._guard_cycle:
                self._guard_cycle = cycle  # a request's headers are complete
                self._guard_header_bytes = 0
                self._cancel_header_timer()
                return
            if waiting or self._waiting_for_headers():
                self._guard_header_bytes += len(data)
                if self._guard_header_bytes > limits.max_header_bytes:
                    log.warning("closing a connection from %s: request headers too large", self._guard_client)
                    self.transport.abort()
                    return
                self._arm_header_timer()

        def _waiting_for_headers(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or cycle is self._guard_cycle and cycle.response_complete

        def _arm_header_timer(self) -> None:
            if self._guard_timer is None:
                self._guard_timer = self.loop.call_later(limits.header_timeout_s, self._header_timeout)

        def _cancel_header_timer(self) -> None:
            if getattr(self, "_guard_timer", None) is not None:
                self._guard_timer.cancel()
                self._guard_timer = None

        def _body_timeout(self) -> None:
            self._guard_body_timer = None
            cycle = getattr(self, "cycle", None)
            if (
                cycle is None
                or not getattr(cycle, "more_body", False)
                or cycle.response_complete
                or self.transport.is_closing()
            ):
                return  # the body arrived (or the answer went out without it)
            idle_s = self.loop.time() - self._guard_body_at
            if self.flow.read_paused or idle_s < limits.header_timeout_s:  # the app is not reading yet
                self._guard_body_timer = self.loop.call_later(
                    max(0.05, limits.header_timeout_s - idle_s), self._body_timeout
                )
                return
            counter.timed_out += 1
            log.warning(
                "closing a connection from %s: request body stalled for %.0f s",
                self._guard_client,
                limits.header_timeout_s,
            )
            self.transport.abort()

        def _header_timeout(self) -> None:
            self._guard_timer = None
            if self._waiting_for_headers() and not self.transport.is_closing():
                counter.timed_out += 1
                log.warning(
                    "closing a connection from %s: no complete request within %.0f s",
                    self._guard_client,
                    limits.header_timeout_s,
                )
                self.transport.abort()

    GuardedHttpProtocol.__name__ = f"Guarded{base.__name__}"
    return GuardedHttpProtocol


class RateLimitFilter(logging.Filter):
    """Passes at most ``per_minute`` records per (logger, message template) a minute; then one summary."""

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        super().__init__()
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], list[float | int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window[0] >= 60.0:
                dropped = 0 if window is None else int(window[2])
                self._windows[key] = [now, 1, 0]
                if len(self._windows) > 1000:  # bounded memory: forget the oldest templates
                    for old in sorted(self._windows, key=lambda k: self._windows[k][0])[:500]:
                        del self._windows[old]
                if dropped:
                    record.msg = f"{record.msg} [{dropped} similar messages suppressed in the last minute]"
                return True
            window[1] += 1
            if window[1] <= self.per_minute:
                return True
            window[2] += 1
            return False


RATE_LIMITED_LOGGERS = ("asyncio", "uvicorn", "uvicorn.error", "csi_ota")
FD_RESERVE = 200  # descriptors kept for the database pool, files, MQTT and logs


def raise_fd_limit() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def fit_to_fd_limit(limits: ServerLimits, ports: int) -> ServerLimits:
    """``limits`` with max_connections lowered so that every port at its cap still leaves FD_RESERVE."""
    import dataclasses

    available = max(ports, (raise_fd_limit() - FD_RESERVE) // ports)
    if limits.max_connections <= available:
        return limits
    log.warning(
        "max connections lowered from %d to %d per port (RLIMIT_NOFILE)", limits.max_connections, available
    )
    return dataclasses.replace(limits, max_connections=available)


def install_log_rate_limit(per_minute: int) -> RateLimitFilter:
    """Adds one RateLimitFilter to the handlers of the root logger and the loggers that flood."""
    limiter = RateLimitFilter(per_minute)
    for name in (None, *RATE_LIMITED_LOGGERS):
        for handler in logging.getLogger(name).handlers:
            if limiter not in handler.filters:
                handler.addFilter(limiter)
    return limiter
