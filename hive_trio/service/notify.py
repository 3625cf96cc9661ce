"""sd_notify(3) over `$NOTIFY_SOCKET`, written with trio's socket: readiness, the watchdog, stopping.

The protocol is one AF_UNIX datagram of newline-separated `KEY=VALUE` lines, sent to the path (or, with
a leading `@`, the abstract name) in `$NOTIFY_SOCKET`. Without that variable (not under systemd, or
`Type=simple`) every call is a no-op. A failed send is logged once and never stops the daemon: systemd
is told nothing worse than silence, which its own timeouts handle. No library is needed for a few lines of
datagram, and `systemd-python` would bring a C build for it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Final, NoReturn

import trio

log = logging.getLogger(__name__)

READY: Final = "READY=1"
WATCHDOG: Final = "WATCHDOG=1"
STOPPING: Final = "STOPPING=1"
RELOADING: Final = "RELOADING=1"


def notify_address(environ: Mapping[str, str] = os.environ) -> str | bytes | None:
    """Where `$NOTIFY_SOCKET` points: a filesystem path, an abstract name (bytes, leading NUL), or None."""
    value = environ.get("NOTIFY_SOCKET", "")
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    # vsock and relative addresses exist (systemd 254+ for VMs); a host daemon has no use for them.
    log.warning("ignoring NOTIFY_SOCKET=%r: only unix socket paths and @abstract names are supported", value)
    return None


def watchdog_interval(environ: Mapping[str, str] = os.environ, *, pid: int | None = None) -> float | None:
    """How often to send WATCHDOG=1: half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises.

    None when the watchdog is off, or when `$WATCHDOG_PID` names another process (the variables were
    inherited, and the watchdog is not ours to feed).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000 / 2


class Notifier:
    """Sends sd_notify states; a no-op without `$NOTIFY_SOCKET`."""

    def __init__(self, address: str | bytes | None) -> None:
        self.address = address
        self._sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if address is not None else None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    async def send(self, *states: str) -> None:
        if self._sock is None or self.address is None or not states:
            return
        try:
            await self._sock.sendto("\n".join(states).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %r: %s", self.address, exc)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def open_notifier(environ: Mapping[str, str] = os.environ) -> Notifier:
    return Notifier(notify_address(environ))


async def serve_watchdog(notifier: Notifier, interval: float) -> NoReturn:
    """Feed the watchdog every `interval` seconds for as long as the event loop runs.

    It runs in the daemon's own trio loop, so a loop that is stuck (a blocking call, a livelock) stops
    the pings and systemd restarts the daemon: exactly what the watchdog is for.
    """
    while True:
        await notifier.send(WATCHDOG)
        await trio.sleep(interval)


__all__ = [
    "READY",
    "RELOADING",
    "STOPPING",
    "WATCHDOG",
    "Notifier",
    "notify_address",
    "open_notifier",
    "serve_watchdog",
    "watchdog_interval",
]
