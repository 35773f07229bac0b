"""Version checks and image downloads answered inside the HTTP protocol, not through ASGI.

uvicorn's httptools protocol parses every request and, for each, builds an ASGI scope, a
RequestResponseCycle and an asyncio task that runs the app, whose two ``send`` awaits
write the status line, the headers and the body. For a version check the hot path
(csi_ota.controller.hot_path) needs none of that: the answer is known as soon as the
headers are parsed. :func:`fast_protocol_class` subclasses uvicorn's protocol so that a
plain ``GET /api/ota/version`` or ``GET /version`` is answered from ``on_headers_complete``
with one ``transport.write`` of the bytes uvicorn would have written (its default
``date``/``server`` headers, the same header order, ``connection: close`` when the request
asked for it). A check that changes what the registry knows still waits for its group
commit: a small task writes the answer after it, and the connection's next request
waits behind it like any pipelined request.

A full-image download (``GET /api/ota/firmware/<sha256>``, no Range, no query) is
authorised the same way and sent by a small task: the headers the ASGI path's
FileResponse would send (memoised per image), then on plain HTTP ``sendfile(2)``
straight onto the socket (one call when the socket buffer takes the image; the loop's
sendfile waits for the rest otherwise), over TLS the image in 256 KiB writes paced by
the transport's flow control (read with pread in the loop: an image is a few page-cached
megabytes; no thread hop per chunk as in the ASGI path). The per-device download cap (csi_ota.controller.download_slots)
holds the task as it holds the ASGI path's: an evicted download's connection is closed.
With ``--x-accel-redirect`` the answer is the header-only redirect for nginx.

Every other request goes to the ASGI app unchanged, and so does any hot request this
protocol does not take exactly (Range requests, the assigned-image paths): a query the hot path refuses to parse (FastAPI explains
it), a body, ``Expect: 100-continue``, an upgrade, a request pipelined behind an
unfinished one, a connection whose write buffer is full, or the concurrency limit
reached. H4's guards (csi_ota.controller.limits) stay around this class: the answered
request leaves a completed cycle behind, which is what the header timeout watches.
"""

from __future__ import annotations

import asyncio
import logging
import os

from starlette.responses import JSONResponse
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from csi_ota.controller.device_api import FIRMWARE_CHUNK_BYTES
from csi_ota.controller.hot_path import (
    _ALL_QUERY,
    FIRMWARE_MISSING,
    FIRMWARE_PREFIX,
    NO_SUCH_FIRMWARE,
    Fallback,
    HotPath,
    apply_download,
    parse_query,
)

log = logging.getLogger("csi_ota.fast_http")

VERSION_PATHS = frozenset({b"/api/ota/version", b"/version"})
_FIRMWARE_PREFIX = FIRMWARE_PREFIX.encode()
_SHA256_HEX_LENGTH = 64
_BODY_HEADERS = (b"content-length", b"transfer-encoding")
_SERVER_ERROR_HEADERS = ((b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"))


class _NoEvent:
    """Stands for a cycle's message_event: an answered check has no body to wait for."""

    @staticmethod
    def set() -> None:
        pass

    @staticmethod
    def clear() -> None:
        pass


_NO_EVENT = _NoEvent()


class AnsweredCycle:
    """What uvicorn's protocol and H4's guard look at on ``self.cycle`` after a check answered here."""

    __slots__ = ("keep_alive", "response_complete", "disconnected", "more_body", "message_event", "body")

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False
        self.more_body = False
        self.message_event = _NO_EVENT
        self.body = bytearray()


def fast_protocol_class(hot: HotPath, base: type = HttpToolsProtocol) -> type:
    """A subclass of uvicorn's httptools protocol that answers ``hot``'s version checks itself."""
    check_version = hot.check_version
    version_answer = hot.version_answer

    class FastVersionCheckProtocol(base):  # type: ignore[misc, valid-type]
        def on_headers_complete(self) -> None:
            if not self._answer_here():
                super().on_headers_complete()

        def _answer_here(self) -> bool:
            """True when this request was taken here (answered, or its answer is on its way)."""
            path, _, query_string = self.url.partition(b"?")
            if path in VERSION_PATHS:
                firmware = None
                if b"#" in query_string:
                    return False
            elif path.startswith(_FIRMWARE_PREFIX) and not query_string:
                firmware = path[len(_FIRMWARE_PREFIX) :]
                if len(firmware) != _SHA256_HEX_LENGTH:
                    return False
            else:
                return False
            parser = self.parser
            if parser.get_method() != b"GET" or parser.should_upgrade() or self.expect_100_continue:
                return False
            cycle = self.cycle
            if (cycle is not None and not cycle.response_complete) or self.pipeline or self.flow.write_paused:
                return False  # answers leave in order: the ASGI path queues this one
            if self.limit_concurrency is not None and (
                len(self.connections) >= self.limit_concurrency or len(self.tasks) >= self.limit_concurrency
            ):
                return False  # uvicorn answers 503
            authorization = None
            for name, value in self.headers:
                if name == b"authorization":
                    if authorization is None:
                        authorization = value
                elif name in _BODY_HEADERS and not (name == b"content-length" and value == b"0"):
                    return False
                elif firmware is not None and (name == b"range" or name == b"if-range"):
                    return False  # partial content: FileResponse
            if firmware is None:
                try:
                    query = parse_query(query_string, _ALL_QUERY)
                except Fallback:
                    return False
            keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
            self.scope["method"] = "GET"
            answered = AnsweredCycle(keep_alive)
            self.cycle = answered
            try:
                if firmware is not None:
                    self._start_download(answered, authorization, firmware.decode("latin-1"))
                    return True
                device, refusal, pending = check_version(query, authorization)
                if refusal is not None:
                    self._write_answer(answered, refusal.status_code, refusal.raw_headers, refusal.body)
                elif pending is None:
                    self._write_answer(answered, *version_answer(device))
                else:
                    self._run(self._answer_after_commit(answered, pending, device))
            except Exception as exc:  # e.g. the registry unreachable while catching up: 500, as uvicorn
                if not answered.response_complete:
                    self._server_error(answered, None, exc)
            return True

        def _run(self, coroutine) -> None:
            task = self.loop.create_task(coroutine)
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)

        # -------------------------------------------------------------- firmware

        def _start_download(self, answered: AnsweredCycle, authorization: bytes | None, sha256: str) -> None:
            """HotPath.firmware's checks, in its order; the bytes leave from a task."""
            device, refusal = hot._authenticate(authorization, None)
            if refusal is not None:
                self._write_answer(answered, refusal.status_code, refusal.raw_headers, refusal.body)
                return
            release = hot.release_by_hash(device, sha256)
            if release is None:  # unknown, or not this device's: the same answer
                self._write_json(answered, *NO_SUCH_FIRMWARE)
                return
            now = hot.ctx.now()
            before = hot._state_of(device)
            apply_download(device, sha256, now)
            pending = None
            if hot._state_of(device) != before:
                pending = hot._commit(device, lambda stored, h=sha256, t=now: apply_download(stored, h, t))
            self._run(self._download(answered, device, release, pending))

        async def _download(self, answered: AnsweredCycle, device, release, pending) -> None:
            if pending is not None:
                try:
                    await pending
                except Exception as exc:
                    return self._server_error(answered, device, exc)
            stat_result = hot.cache.firmware_stat(release)
            if stat_result is None:
                return self._write_json(answered, *FIRMWARE_MISSING)
            if hot.ctx.settings.accel_redirect_prefix:  # nginx in front sends the file
                hot._count_download()
                return self._write_answer(answered, 200, hot.accel_headers(release), b"")
            slots = hot.download_slots
            slot = None if slots is None else slots.acquire(device.id)  # evicts beyond the cap
            hot._count_download()
            try:
                if slot is not None:
                    slot.bind()
                head = self._head(answered, 200, hot.file_headers(release, stat_result))
                if self.scheme == "http":
                    sent = zero_copy = await self._sendfile(head, release.path, stat_result.st_size)
                else:  # TLS: the kernel cannot encrypt what sendfile sends
                    sent, zero_copy = await self._stream(head, release.path, stat_result.st_size), 0
            except asyncio.CancelledError:
                if slot is None or not slot.evicted:
                    raise
                self.transport.abort()  # a newer download of the same device evicted this one
                answered.response_complete = True
                return
            finally:
                if slot is not None:
                    slots.release(device.id, slot)
            hot._count_bytes(sent)
            if zero_copy:
                hot._count_zero_copy(zero_copy)
            if sent != stat_result.st_size:  # the client went away mid-image
                answered.disconnected = True
                self.transport.close()
            self._complete(answered)

        async def _sendfile(self, head: bytes, path, size: int) -> int:
            """The headers, then the image with sendfile(2); returns the image bytes sent."""
            transport = self.transport
            transport.write(head)
            sent = 0
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                return 0
            try:
                if transport.get_write_buffer_size() == 0 and not transport.is_closing():
                    sock = transport.get_extra_info("socket")
                    try:
                        sent = os.sendfile(sock.fileno(), fd, 0, size)
                    except BlockingIOError:
                        sent = 0
                if sent < size:  # the socket is full: the loop waits for it and sends the rest
                    with open(fd, "rb", closefd=False) as file:
                        sent += await self.loop.sendfile(transport, file, sent, size - sent)
            except (ConnectionError, OSError, RuntimeError):
                pass  # the client went away: nothing more to say
            finally:
                os.close(fd)
            return sent

        async def _stream(self, head: bytes, path, size: int) -> int:
            """The headers, then the image in FIRMWARE_CHUNK_BYTES writes (TLS), paced by the transport's
            flow control as uvicorn's send is; returns the image bytes written."""
            transport = self.transport
            transport.write(head)
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                return 0
            sent = 0
            try:
                while sent < size and not transport.is_closing():
                    chunk = os.pread(fd, min(FIRMWARE_CHUNK_BYTES, size - sent), sent)
                    if not chunk:
                        break
                    transport.write(chunk)
                    sent += len(chunk)
                    if self.flow.write_paused:
                        await self.flow.drain()
            except (ConnectionError, OSError, RuntimeError):
                pass  # the client went away
            finally:
                os.close(fd)
            return sent

        # -------------------------------------------------------------- answers

        def _server_error(self, answered: AnsweredCycle, device, exc: BaseException) -> None:
            """What uvicorn does for an app that raised before answering: log, 500, close."""
            log.error("request of %s failed", getattr(device, "id", "a device"), exc_info=exc)
            answered.keep_alive = False
            if answered.disconnected:
                answered.response_complete = True
                return
            self._write_answer(answered, 500, _SERVER_ERROR_HEADERS, b"Internal Server Error")

        def _write_json(self, answered: AnsweredCycle, content, status: int) -> None:
            response = JSONResponse(content, status)
            self._write_answer(answered, status, response.raw_headers, response.body)

        async def _answer_after_commit(self, answered: AnsweredCycle, pending, device) -> None:
            try:
                await pending
            except Exception as exc:
                return self._server_error(answered, device, exc)
            if answered.disconnected:
                answered.response_complete = True
                return
            self._write_answer(answered, *version_answer(device))

        def _head(self, answered: AnsweredCycle, status: int, headers) -> bytes:
            """Status line and headers as uvicorn's RequestResponseCycle.send writes them."""
            parts = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                parts += (name, b": ", value, b"\r\n")
            for name, value in headers:
                parts += (name, b": ", value, b"\r\n")
            if not answered.keep_alive:
                parts.append(b"connection: close\r\n")
            parts.append(b"\r\n")
            return b"".join(parts)

        def _write_answer(self, answered: AnsweredCycle, status: int, headers, body: bytes) -> None:
            """A whole response in one write."""
            self.transport.write(self._head(answered, status, headers) + body)
            self._complete(answered)

        def _complete(self, answered: AnsweredCycle) -> None:
            answered.response_complete = True
            if not answered.keep_alive:
                self.transport.close()
            self.on_response_complete()

    FastVersionCheckProtocol.__name__ = f"FastVersionCheck{base.__name__}"
    return FastVersionCheckProtocol
