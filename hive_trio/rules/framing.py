"""Newline-delimited framing with a hard frame limit, shared by every socket (sans-IO).

MCP's stdio transport and hyperhive's host.sock both send one JSON document per line. A peer that
sends a line longer than the limit is refused before the line is buffered in full, so a hostile client
cannot make the daemon hold more than `max_frame` bytes for it.
"""

from __future__ import annotations


class FrameTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"a line exceeded the {limit}-byte frame limit; closing this connection")
        self.limit = limit


class LineFramer:
    def __init__(self, *, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already known to hold no newline

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        """Add received bytes; return the complete lines (without their newline). May raise FrameTooLarge."""
        if not self._buf and data.endswith(b"\n") and data.count(b"\n") == 1 and len(data) <= self.max_frame:
            # The common case, one whole request per read: no copy into the buffer and out again.
            line = bytes(data[:-1])
            return [line[:-1] if line.endswith(b"\r") else line]
        self._buf += data
        lines: list[bytes] = []
        start = 0
        while True:
            nl = self._buf.find(b"\n", max(start, self._scanned))
            if nl < 0:
                break
            if nl - start > self.max_frame:
                raise FrameTooLarge(self.max_frame)
            line = bytes(self._buf[start:nl])
            if line.endswith(b"\r"):
                line = line[:-1]
            lines.append(line)
            start = nl + 1
        del self._buf[:start]
        self._scanned = len(self._buf)
        if len(self._buf) > self.max_frame:
            raise FrameTooLarge(self.max_frame)
        return lines

    @property
    def buffered(self) -> int:
        return len(self._buf)
