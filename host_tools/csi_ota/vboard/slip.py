"""SLIP framing (RFC 1055) as the ESP ROM loader uses it: 0xC0 ends, 0xDB escapes."""

from __future__ import annotations

END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD


def encode(payload: bytes) -> bytes:
    """One frame: 0xC0, the escaped payload, 0xC0."""
    body = payload.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + body + b"\xc0"


class Decoder:
    """Feed bytes, get whole frames. Bytes outside frames (a console line) are dropped."""

    def __init__(self, max_frame_bytes: int = 64 * 1024) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._frame: bytearray | None = None
        self._escaped = False

    def feed(self, data: bytes) -> list[bytes]:
        frames = []
        for byte in data:
            if self._frame is None:
                if byte == END:
                    self._frame = bytearray()
                continue
            if byte == END:
                if self._frame:  # 0xC0 0xC0: the end of one frame and the start of the next
                    frames.append(bytes(self._frame))
                    self._frame = None
                self._escaped = False
                continue
            if self._escaped:
                self._escaped = False
                if byte == ESC_END:
                    byte = END
                elif byte == ESC_ESC:
                    byte = ESC
                else:  # invalid escape: the ROM drops the frame
                    self._frame = None
                    continue
            elif byte == ESC:
                self._escaped = True
                continue
            self._frame.append(byte)
            if len(self._frame) > self.max_frame_bytes:
                self._frame = None
        return frames
