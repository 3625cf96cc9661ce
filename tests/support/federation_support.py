"""Two federated hives for tests: configs linked by leafnode on loopback, and ways to look inside them."""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import apsw
import trio

from hive_trio.federation.server import free_port
from hive_trio.rules.federation import FederationConfig, LeafPeer, LeafRemote

LEAF_PASSWORD = "leaf-secret-for-tests"


def linked_pair(*, a: str = "a", b: str = "b", **common: Any) -> tuple[FederationConfig, FederationConfig]:
    """`b`'s embedded server accepts a leafnode from `a`'s; `a` dials it. Messages flow both ways."""
    leaf_port = free_port()
    fed_b = FederationConfig(
        enabled=True,
        hive=b,
        leaf_listen=f"127.0.0.1:{leaf_port}",
        leaf_peers=[LeafPeer(hive=a, password=LEAF_PASSWORD)],
        roster_interval=0.2,
        publish_timeout=0.5,
        ack_wait=2.0,
        **common,
    )
    fed_a = FederationConfig(
        enabled=True,
        hive=a,
        leaf_remotes=[LeafRemote(url=f"nats-leaf://127.0.0.1:{leaf_port}", password=LEAF_PASSWORD)],
        roster_interval=0.2,
        publish_timeout=0.5,
        ack_wait=2.0,
        **common,
    )
    return fed_a, fed_b


def nats_pid(state_dir: Path) -> int:
    return int((state_dir / "nats" / "nats-server.pid").read_text().strip())


def sigkill_nats(state_dir: Path) -> int:
    pid = nats_pid(state_dir)
    os.kill(pid, signal.SIGKILL)
    return pid


def inbox(db_path: Path, recipient: str) -> list[tuple[str, str]]:
    """(sender, body) of every message for `recipient`, read straight from a hive.db (the daemon may be dead)."""
    conn = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [
            (r[0], r[1])
            for r in conn.execute("SELECT sender, body FROM messages WHERE recipient = ? ORDER BY id", (recipient,))
        ]
    finally:
        conn.close()


async def wait_until(predicate: Callable[[], Awaitable[bool]], *, seconds: float, interval: float = 0.05) -> None:
    """Real-time polling for a condition that crosses processes (NATS), bounded by `seconds`."""
    with trio.fail_after(seconds):
        # Polling on purpose: the condition lives in another process (a nats-server, a daemon's hive.db).
        while not await predicate():  # noqa: ASYNC110
            await trio.sleep(interval)
