"""The board behind an RFC 2217 port: ``rfc2217://127.0.0.1:PORT`` for esptool and pytest-embedded.

pyserial's :class:`serial.rfc2217.PortManager` does the Telnet/RFC 2217 side; the "serial
port" it drives is :class:`BoardPort`, whose DTR/RTS setters are the board's modem lines.
One client at a time, like a real serial port; when it disconnects the board keeps running
(as a USB-UART left unopened) and the next client finds it as it is.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading

import serial.rfc2217

from csi_ota.vboard.board import Board

log = logging.getLogger(__name__)


class BoardPort:
    """The attributes PortManager reads and writes on a serial port, wired to the board."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.baudrate = 115200
        self.bytesize = 8
        self.parity = "N"
        self.stopbits = 1
        self.xonxoff = False
        self.rtscts = False
        self.break_condition = False
        self.cts = self.dsr = self.ri = self.cd = False
        self.name = "virtual ESP32-S3"

    @property
    def dtr(self) -> bool:
        return self.board.dtr

    @dtr.setter
    def dtr(self, value: bool) -> None:
        self.board.set_lines(dtr=value)

    @property
    def rts(self) -> bool:
        return self.board.rts

    @rts.setter
    def rts(self, value: bool) -> None:
        self.board.set_lines(rts=value)

    def reset_input_buffer(self) -> None:
        pass

    def reset_output_buffer(self) -> None:
        pass


class _Connection:
    """PortManager's ``connection``: where Telnet answers and escaped UART bytes go."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)


class BoardServer:
    """Serves ``board`` on ``host:port`` (port 0: any free port, see :attr:`port`)."""

    def __init__(self, board: Board, host: str = "127.0.0.1", port: int = 0) -> None:
        self.board = board
        self.listener = socket.create_server((host, port))
        self.host = host
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"rfc2217://{self.host}:{self.port}"

    def start(self) -> BoardServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.board.close()

    def serve_forever(self) -> None:
        self.listener.settimeout(0.5)
        while not self._stop.is_set():
            try:
                sock, peer = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            log.info("board: client %s:%s connected", *peer[:2])
            try:
                self._serve_client(sock)
            finally:
                self.board.output = lambda data: None
                with contextlib.suppress(OSError):
                    sock.close()
                log.info("board: client disconnected")

    def _serve_client(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(sock)
        manager = serial.rfc2217.PortManager(BoardPort(self.board), connection)

        def to_client(data: bytes) -> None:
            connection.write(b"".join(manager.escape(data)))

        self.board.output = to_client
        while not self._stop.is_set():
            readable, _, _ = select.select([sock], [], [], 0.5)
            if not readable:
                continue
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            payload = b"".join(manager.filter(data))
            if payload:
                self.board.receive(payload)
