"""An agent's output log: appended chunk by chunk, rotated at a size limit, never buffered in memory.

A process agent's stdout and stderr go through a pipe to this writer. The file is rotated to
`<name>.log.1` when the next chunk would push it past `max_bytes`, so an agent that floods its
output costs at most twice `max_bytes` of disk and one pipe chunk of memory; it is slowed by the
pipe, never allowed to grow the daemon. Writes happen in a worker thread (regular files block).
This module never reads the pipe itself and knows nothing of processes.
"""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path
from typing import BinaryIO

import attrs
import trio

log = logging.getLogger(__name__)

# Every open writer, so SIGHUP can ask each to reopen its file (after logrotate moved it away).
_OPEN_LOGS: weakref.WeakSet[AgentLog] = weakref.WeakSet()


def reopen_agent_logs() -> int:
    """Ask every open agent log to reopen its path before its next write; returns how many."""
    logs = list(_OPEN_LOGS)
    for writer in logs:
        writer.request_reopen()
    return len(logs)


def rotated_path(path: Path) -> Path:
    return path.with_name(path.name + ".1")


class AgentLog:
    def __init__(self, path: Path, *, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.path = path
        self.max_bytes = max_bytes
        self._file: BinaryIO | None = None
        self._size = 0
        self.rotations = 0
        self.failed = False
        # Set from the trio thread, read by the worker thread that writes: a plain flag, no lock needed.
        self._reopen_requested = False

    @classmethod
    async def open(cls, path: Path, *, max_bytes: int) -> AgentLog:
        writer = cls(path, max_bytes=max_bytes)
        await trio.to_thread.run_sync(writer._open)
        return writer

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "ab", buffering=0)
        self._size = os.fstat(fd).st_size
        _OPEN_LOGS.add(self)

    def request_reopen(self) -> None:
        self._reopen_requested = True

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        os.replace(self.path, rotated_path(self.path))
        self.rotations += 1
        self._open()

    def write_sync(self, data: bytes | bytearray) -> None:
        """Append `data`, rotating whenever the file is full; the file never exceeds `max_bytes`."""
        if self._reopen_requested:
            self._reopen_requested = False
            self.close_sync()
            self._open()
        view = memoryview(data)
        while view:
            room = self.max_bytes - self._size
            if room <= 0:
                self._rotate()
                continue
            part = view[:room]
            assert self._file is not None
            self._file.write(part)
            self._size += len(part)
            view = view[len(part) :]

    async def write(self, data: bytes | bytearray) -> None:
        """Append `data`. A failing disk loses log lines (logged once), never stops the agent."""
        if self.failed or not data:
            return
        try:
            await trio.to_thread.run_sync(self.write_sync, data)
        except OSError as exc:
            self.failed = True
            log.warning("agent log %s stopped: %s; further output is discarded", self.path, exc)

    def close_sync(self) -> None:
        _OPEN_LOGS.discard(self)
        if self._file is not None:
            self._file.close()
            self._file = None

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.close_sync)

    @property
    def size(self) -> int:
        return self._size


@attrs.frozen
class LogChunk:
    """A piece of a log file. `offset` is where the next read continues (the file's end when it was read)."""

    text: str
    offset: int
    # True when the file is shorter than the offset asked for: it was rotated, so reading restarted at 0.
    rotated: bool = False


def read_log_chunk(path: Path, *, offset: int | None, max_bytes: int) -> LogChunk:
    """The last `max_bytes` of `path` (from a line start) when `offset` is None, else what follows `offset`.

    Blocking (a regular file): call it from a worker thread. A missing file reads as empty, because an
    agent that has not started yet simply has no output.
    """
    max_bytes = max(1, max_bytes)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            rotated = offset is not None and offset > size
            if offset is None:
                start = max(0, size - max_bytes)
            else:
                start = 0 if rotated else offset
            fh.seek(start)
            data = fh.read(max_bytes)
    except FileNotFoundError:
        return LogChunk(text="", offset=0, rotated=bool(offset))
    end = start + len(data)
    if offset is None and start > 0:
        # Begin at a whole line, so a tail never opens with half of one.
        newline = data.find(b"\n")
        data = data[newline + 1 :] if newline >= 0 else data
    return LogChunk(text=data.decode("utf-8", "replace"), offset=end, rotated=rotated)
