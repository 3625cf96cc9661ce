"""One daemon per `state_dir`: an exclusive `flock` held for the daemon's whole life.

The lock file records the holder's pid so the refusal can say who holds it. The kernel drops the
lock when the process dies, even by SIGKILL, so a crashed daemon never blocks its successor.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from hive_trio.errors import HiveError
from hive_trio.rules.strict_dirs import open_regular


class AlreadyRunning(HiveError):
    pass


class StateLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"another hive-trio daemon (pid {holder}) is already using {self.path.parent}; "
                "stop it first or pick another --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
