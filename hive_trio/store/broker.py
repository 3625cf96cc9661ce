"""The durable message broker: inboxes with lease-style delivery (SPEC §3, hyperhive's `Broker`).

A message is `sent` (row inserted), then `delivered` (`delivered_at` stamped by `recv`), then `acked`
(`acked_at` stamped by `ack_turn`). A delivered-but-unacked message goes back to the inbox when its
agent restarts or asks (`requeue_inflight`), and comes out again marked `redelivered`. The module-level
functions are the whole logic, on a plain APSW connection; `Broker` only routes them through the
database's writer. It never knows about sockets, tasks or the dashboard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

import apsw

from hive_trio.errors import TooLarge, UnknownAgent
from hive_trio.records import MANAGER_AGENT, OPERATOR, SYSTEM_SENDER, Message
from hive_trio.rules.snapshot_budget import within_budget
from hive_trio.store.columns import Columns
from hive_trio.store.database import Database, StoreFace

T = TypeVar("T")
# Inboxes that exist without an `agents` row.
STANDING_INBOXES = frozenset({MANAGER_AGENT, OPERATOR})
# Unread notices from `system` the manager's inbox keeps (see `_trim_manager_backlog`).
MANAGER_NOTICE_BACKLOG = 500
_COLUMNS: Final = Columns(Message, convert={"redelivered": bool}, column={"redelivered": "requeued"})


def is_known_recipient(conn: apsw.Connection, name: str) -> bool:
    if name in STANDING_INBOXES:
        return True
    return conn.execute("SELECT 1 FROM agents WHERE name = ?", (name,)).fetchone() is not None


def check_body(body: str, *, max_body_bytes: int) -> None:
    size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > max_body_bytes:
        raise TooLarge(
            f"message body is {size} bytes, over the {max_body_bytes}-byte limit; "
            "write it to a file in your state dir and send its path instead"
        )


def _insert(conn: apsw.Connection, *, sender: str, recipient: str, body: str, now: float) -> Message:
    row = conn.execute(
        f"INSERT INTO messages (sender, recipient, body, sent_at) VALUES (?, ?, ?, ?) RETURNING {_COLUMNS.sql}",
        (sender, recipient, body, now),
    ).fetchone()
    assert row is not None
    if recipient == MANAGER_AGENT and sender == SYSTEM_SENDER:
        _trim_manager_backlog(conn, now=now)
    return _COLUMNS.read(row)


def send_tx(
    conn: apsw.Connection, *, sender: str, recipient: str, body: str, now: float, max_body_bytes: int
) -> Message:
    check_body(body, max_body_bytes=max_body_bytes)
    if not is_known_recipient(conn, recipient):
        raise UnknownAgent(recipient)
    return _insert(conn, sender=sender, recipient=recipient, body=body, now=now)


def notice_tx(conn: apsw.Connection, *, sender: str, recipient: str, body: str, now: float) -> Message | None:
    """A daemon notice (a HelperEvent from `system`) inside someone else's transaction.

    It commits with the change it reports, or not at all, so a crash can never keep one without the
    other. An inbox that no longer exists gets nothing (best effort, as hive-c0re's notify). The body
    limit is for agents' messages; the daemon's own notices are built from inputs already bounded.
    """
    if not is_known_recipient(conn, recipient):
        return None
    return _insert(conn, sender=sender, recipient=recipient, body=body, now=now)


def _trim_manager_backlog(conn: apsw.Connection, *, now: float) -> None:
    """Keep at most `MANAGER_NOTICE_BACKLOG` unread notices from `system` in the manager's inbox.

    hive-c0re's notices pile up without bound while no manager runs (a process hive without
    `manager_command`, or a manager down for days). The older ones beyond the newest N are marked
    delivered and acked (superseded), not deleted: they stay readable with `recent` until the vacuum's
    retention passes. A manager that reads its inbox is never near the cap. Agents' own messages to the
    manager are never touched.
    """
    conn.execute(
        "UPDATE messages SET delivered_at = ?, acked_at = ? WHERE id IN ("
        " SELECT id FROM messages WHERE recipient = ? AND sender = ? AND delivered_at IS NULL"
        " ORDER BY id DESC LIMIT -1 OFFSET ?)",
        (now, now, MANAGER_AGENT, SYSTEM_SENDER, MANAGER_NOTICE_BACKLOG),
    )


def broadcast_tx(conn: apsw.Connection, *, sender: str, body: str, now: float, max_body_bytes: int) -> list[Message]:
    """One message to every registered agent but the sender, in one transaction (one send order)."""
    check_body(body, max_body_bytes=max_body_bytes)
    names = [r[0] for r in conn.execute("SELECT name FROM agents WHERE name != ? ORDER BY name", (sender,))]
    return [send_tx(conn, sender=sender, recipient=n, body=body, now=now, max_body_bytes=max_body_bytes) for n in names]


def deliver_tx(
    conn: apsw.Connection, *, recipient: str, limit: int, now: float, max_bytes: int | None = None
) -> list[Message]:
    """Hand out up to `limit` of the oldest undelivered messages, stamping `delivered_at`.

    With `max_bytes`, stop before the bodies add up to more than that (always at least one message),
    so one reply never outgrows the frame limit the agent reads with.
    """
    rows = conn.execute(
        "SELECT id, length(CAST(body AS BLOB)) FROM messages"
        " WHERE recipient = ? AND delivered_at IS NULL ORDER BY id LIMIT ?",
        (recipient, limit),
    ).fetchall()
    ids = [r[0] for r in _within_budget(rows, size=lambda r: r[1] if isinstance(r[1], int) else 0, max_bytes=max_bytes)]
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    taken = conn.execute(
        f"UPDATE messages SET delivered_at = ? WHERE id IN ({marks}) RETURNING {_COLUMNS.sql}", (now, *ids)
    ).fetchall()
    return sorted((_COLUMNS.read(r) for r in taken), key=lambda m: m.id)


def _within_budget(items: Sequence[T], *, size: Callable[[T], int], max_bytes: int | None) -> list[T]:
    """The longest prefix of `items` whose sizes fit `max_bytes` (the snapshot's rule); all of them with None."""
    return list(items) if max_bytes is None else within_budget(items, size=size, max_bytes=max_bytes)[0]


def ack_tx(conn: apsw.Connection, *, recipient: str, now: float) -> int:
    conn.execute(
        "UPDATE messages SET acked_at = ? WHERE recipient = ? AND delivered_at IS NOT NULL AND acked_at IS NULL",
        (now, recipient),
    )
    return conn.changes()


def close_inbox_tx(conn: apsw.Connection, *, recipient: str, now: float) -> int:
    """Purge: every message to `recipient` not yet acked is marked delivered and acked now, so no later
    agent of that name is ever handed it. The rows stay (history) until retention drops them."""
    conn.execute(
        "UPDATE messages SET delivered_at = coalesce(delivered_at, ?), acked_at = ?"
        " WHERE recipient = ? AND acked_at IS NULL",
        (now, now, recipient),
    )
    return conn.changes()


def requeue_tx(conn: apsw.Connection, *, recipient: str) -> int:
    conn.execute(
        "UPDATE messages SET delivered_at = NULL, requeued = 1"
        " WHERE recipient = ? AND delivered_at IS NOT NULL AND acked_at IS NULL",
        (recipient,),
    )
    return conn.changes()


def release_tx(conn: apsw.Connection, *, ids: Iterable[int]) -> int:
    """Undo deliveries whose reply never reached the agent: they were never seen, so not `redelivered`."""
    total = 0
    for mid in ids:
        conn.execute(
            "UPDATE messages SET delivered_at = NULL WHERE id = ? AND acked_at IS NULL AND delivered_at IS NOT NULL",
            (mid,),
        )
        total += conn.changes()
    return total


def pending_count(conn: apsw.Connection, recipient: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM messages WHERE recipient = ? AND delivered_at IS NULL", (recipient,)
    ).fetchone()
    return int(row[0]) if row else 0


def pending_counts(conn: apsw.Connection) -> dict[str, int]:
    return {
        r[0]: int(r[1])
        for r in conn.execute("SELECT recipient, count(*) FROM messages WHERE delivered_at IS NULL GROUP BY recipient")
    }


def pending_counts_for(conn: apsw.Connection, names: Sequence[str]) -> dict[str, int]:
    return {name: pending_count(conn, name) for name in dict.fromkeys(names)}


def recent(conn: apsw.Connection, *, recipient: str | None, limit: int, max_bytes: int | None = None) -> list[Message]:
    """The newest `limit` rows, oldest first; with `max_bytes`, only as many of the newest as fit."""
    if recipient is None:
        cur = conn.execute(f"SELECT {_COLUMNS.sql} FROM messages ORDER BY id DESC LIMIT ?", (limit,))
    else:
        cur = conn.execute(
            f"SELECT {_COLUMNS.sql} FROM messages WHERE recipient = ? ORDER BY id DESC LIMIT ?", (recipient, limit)
        )
    newest_first = [_COLUMNS.read(r) for r in cur.fetchall()]
    kept = _within_budget(
        newest_first, size=lambda m: len(m.body.encode("utf-8", "surrogatepass")), max_bytes=max_bytes
    )
    return kept[::-1]


def get(conn: apsw.Connection, mid: int) -> Message | None:
    row = conn.execute(f"SELECT {_COLUMNS.sql} FROM messages WHERE id = ?", (mid,)).fetchone()
    return _COLUMNS.read(row) if row else None


def vacuum_tx(conn: apsw.Connection, *, older_than: float) -> int:
    """Drop acked messages acked before `older_than`. Undelivered and unacked ones are never dropped."""
    conn.execute("DELETE FROM messages WHERE acked_at IS NOT NULL AND acked_at < ?", (older_than,))
    return conn.changes()


class Broker(StoreFace):
    def __init__(self, db: Database, *, clock: Callable[[], float], max_body_bytes: int) -> None:
        super().__init__(db, clock=clock)
        self.max_body_bytes = max_body_bytes

    async def send(self, sender: str, recipient: str, body: str) -> Message:
        # Cheap refusal before a thread hop; the transaction checks again.
        check_body(body, max_body_bytes=self.max_body_bytes)
        now = self.clock()
        return await self.db.write(
            lambda c: send_tx(
                c, sender=sender, recipient=recipient, body=body, now=now, max_body_bytes=self.max_body_bytes
            )
        )

    async def broadcast(self, sender: str, body: str) -> list[Message]:
        check_body(body, max_body_bytes=self.max_body_bytes)
        now = self.clock()
        return await self.db.write(
            lambda c: broadcast_tx(c, sender=sender, body=body, now=now, max_body_bytes=self.max_body_bytes)
        )

    async def deliver(self, recipient: str, *, limit: int, max_bytes: int | None = None) -> list[Message]:
        now = self.clock()
        return await self.db.write(
            lambda c: deliver_tx(c, recipient=recipient, limit=limit, now=now, max_bytes=max_bytes)
        )

    async def ack(self, recipient: str) -> int:
        now = self.clock()
        return await self.db.write(lambda c: ack_tx(c, recipient=recipient, now=now))

    async def close_inbox(self, recipient: str) -> int:
        now = self.clock()
        return await self.db.write(lambda c: close_inbox_tx(c, recipient=recipient, now=now))

    async def requeue_inflight(self, recipient: str) -> int:
        return await self.db.write(lambda c: requeue_tx(c, recipient=recipient))

    async def release(self, ids: Sequence[int]) -> int:
        return await self.db.write(lambda c: release_tx(c, ids=ids))

    async def pending_count(self, recipient: str) -> int:
        return await self.db.read(lambda c: pending_count(c, recipient))

    async def recent(
        self, *, recipient: str | None = None, limit: int = 50, max_bytes: int | None = None
    ) -> list[Message]:
        return await self.db.read(lambda c: recent(c, recipient=recipient, limit=limit, max_bytes=max_bytes))

    async def get(self, mid: int) -> Message | None:
        return await self.db.read(lambda c: get(c, mid))

    async def vacuum(self, *, retention_seconds: float) -> int:
        cutoff = self.clock() - retention_seconds
        return await self.db.write(lambda c: vacuum_tx(c, older_than=cutoff), bulk=True)
