"""The federation outbox and inbound dedup: remote sends, their forwarding, and messages from other hives.

A send to `agent@hive` inserts its `messages` row (the sender's record of it, the id `send` returns) and
its `outbox` row in one transaction, so it is acknowledged to the agent only once it is durable here.
The forwarder publishes outbox rows and stamps `forwarded_at` once the destination's JetStream has
acknowledged them; nothing is dropped before that. On the receiving side `accept_tx` inserts into the
broker and records (origin hive, origin id) in `federation_received` in the same transaction: a
redelivered message finds its key taken and changes nothing. What cannot be delivered goes back as a
bounce, itself queued in this outbox, so it survives a crash just as a message does.

Plain functions on an APSW connection, like every store, and `Outbox`, which routes them through the
database's writer; the coordinator holds it. No sockets, no tasks, no events.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import apsw

from hive_trio.records import (
    MANAGER_AGENT,
    OPERATOR,
    SYSTEM_SENDER,
    HelperEvent,
    HelperUndeliverable,
    Message,
    WireBounce,
    WireMessage,
    to_json,
)
from hive_trio.records.federation import (
    BROADCAST_TOKEN,
    Accepted,
    Arrival,
    MessageSubject,
    OutboxItem,
    OutboxStats,
    RemoteAddress,
    message_subject,
    msg_id,
)
from hive_trio.store import broker as broker_sql
from hive_trio.store.database import Database

_OUTBOX_COLUMNS = "id, message_id, kind, hive, sender, address, subject, nats_msg_id, payload, queued_at"


def _item(row: Sequence[Any]) -> OutboxItem:
    return OutboxItem(*row)


def queue_remote_tx(
    conn: apsw.Connection,
    *,
    origin: str,
    sender: str,
    address: RemoteAddress,
    body: str,
    now: float,
    max_body_bytes: int,
) -> Message:
    """The sender's `messages` row (recipient `agent@hive`) and its outbox row, in the caller's transaction."""
    broker_sql.check_body(body, max_body_bytes=max_body_bytes)
    # Not the broker's insert: `agent@hive` is no local inbox, so `is_known_recipient` would refuse it.
    row = conn.execute(
        "INSERT INTO messages (sender, recipient, body, sent_at) VALUES (?, ?, ?, ?) RETURNING id",
        (sender, str(address), body, now),
    ).fetchone()
    assert row is not None
    mid = int(row[0])
    payload = to_json(WireMessage(id=mid, body=body, sent_at=now))
    subject = message_subject(origin=origin, dest=address.hive, sender=sender, recipient_token=address.token)
    conn.execute(
        "INSERT INTO outbox (message_id, kind, hive, sender, address, subject, nats_msg_id, payload, queued_at)"
        " VALUES (?, 'message', ?, ?, ?, ?, ?, ?, ?)",
        (mid, address.hive, sender, str(address), subject, msg_id(origin, mid), payload, now),
    )
    return Message(id=mid, sender=sender, recipient=str(address), body=body, sent_at=now)


def queue_bounce_tx(
    conn: apsw.Connection, *, origin: str, to_hive: str, to_sender: str, origin_id: int, reason: str, now: float
) -> None:
    """Tell `to_sender@to_hive` that its message `origin_id` could not be delivered here. Idempotent."""
    subject = message_subject(origin=origin, dest=to_hive, sender=SYSTEM_SENDER, recipient_token=to_sender)
    payload = to_json(WireBounce(id=origin_id, reason=reason))
    conn.execute(
        "INSERT OR IGNORE INTO outbox (message_id, kind, hive, sender, address, subject, nats_msg_id, payload,"
        " queued_at) VALUES (NULL, 'bounce', ?, ?, ?, ?, ?, ?, ?)",
        (
            to_hive,
            SYSTEM_SENDER,
            f"{to_sender}@{to_hive}",
            subject,
            f"{origin}:bounce:{to_hive}:{origin_id}",
            payload,
            now,
        ),
    )


def pending(conn: apsw.Connection, *, limit: int, skip_hives: Collection[str] = ()) -> list[OutboxItem]:
    """The oldest unforwarded rows, in order; `skip_hives` (in back-off) are left out, so a hive that is
    down with a long queue never hides the rows of the hives that are up."""
    skip = sorted(skip_hives)
    not_in = f" AND hive NOT IN ({', '.join('?' * len(skip))})" if skip else ""
    rows = conn.execute(
        f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE forwarded_at IS NULL AND failed_at IS NULL{not_in}"
        " ORDER BY id LIMIT ?",
        (*skip, limit),
    ).fetchall()
    return [_item(r) for r in rows]


def mark_forwarded_tx(conn: apsw.Connection, *, ids: Collection[int], now: float) -> int:
    """The destination's JetStream holds these. Their `messages` rows count as delivered and acked: the
    link took them, and nothing local will ever hand them out."""
    total = 0
    for oid in ids:
        row = conn.execute(
            "UPDATE outbox SET forwarded_at = ? WHERE id = ? AND forwarded_at IS NULL AND failed_at IS NULL"
            " RETURNING message_id",
            (now, oid),
        ).fetchone()
        if row is None:
            continue
        total += 1
        if row[0] is not None:
            conn.execute(
                "UPDATE messages SET delivered_at = coalesce(delivered_at, ?), acked_at = coalesce(acked_at, ?)"
                " WHERE id = ?",
                (now, now, row[0]),
            )
    return total


def _undeliverable_notice(
    conn: apsw.Connection, *, message_id: int, sender: str, address: str, reason: str, now: float
) -> Message | None:
    conn.execute(
        "UPDATE messages SET delivered_at = coalesce(delivered_at, ?), acked_at = coalesce(acked_at, ?) WHERE id = ?",
        (now, now, message_id),
    )
    body = to_json(HelperUndeliverable(id=message_id, to=address, reason=reason), HelperEvent)
    return broker_sql.notice_tx(conn, sender=SYSTEM_SENDER, recipient=sender, body=body, now=now)


def fail_tx(conn: apsw.Connection, *, outbox_id: int, reason: str, now: float) -> Message | None:
    """The link refused this row for good (over NATS's payload limit...): the sender hears why."""
    row = conn.execute(
        "UPDATE outbox SET failed_at = ?, note = ? WHERE id = ? AND forwarded_at IS NULL AND failed_at IS NULL"
        " RETURNING message_id, sender, address",
        (now, reason, outbox_id),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return _undeliverable_notice(conn, message_id=row[0], sender=row[1], address=row[2], reason=reason, now=now)


def bounce_received_tx(
    conn: apsw.Connection, *, from_hive: str, sender: str, bounce: WireBounce, now: float
) -> Message | None:
    """`from_hive` could not deliver our message `bounce.id`. Only a bounce for a message we really sent to
    that hive, from that sender, counts: a hive cannot forge one about another's traffic."""
    row = conn.execute(
        "UPDATE outbox SET failed_at = coalesce(failed_at, ?), note = ?"
        " WHERE kind = 'message' AND hive = ? AND message_id = ? AND sender = ? AND note IS NULL"
        " RETURNING message_id, sender, address",
        (now, bounce.reason[:500], from_hive, bounce.id, sender),
    ).fetchone()
    if row is None:
        return None
    reason = f"{from_hive}: {bounce.reason[:500]}"
    return _undeliverable_notice(conn, message_id=row[0], sender=row[1], address=row[2], reason=reason, now=now)


def accept_tx(
    conn: apsw.Connection,
    *,
    me: str,
    subject: MessageSubject,
    wire: WireMessage,
    now: float,
    max_body_bytes: int,
    isolated: Collection[str],
    peer_allowed: bool,
) -> Accepted:
    """Put a message from another hive into local inboxes, once: `from` is `sender@origin` from the subject."""
    key = (subject.origin, wire.id)
    conn.execute(
        "INSERT OR IGNORE INTO federation_received (origin_hive, origin_id, received_at) VALUES (?, ?, ?)",
        (*key, now),
    )
    if conn.changes() == 0:
        return Accepted(duplicate=True)

    def bounce(reason: str) -> Accepted:
        queue_bounce_tx(
            conn, origin=me, to_hive=subject.origin, to_sender=subject.sender, origin_id=wire.id, reason=reason, now=now
        )
        return Accepted(bounced=reason)

    if not peer_allowed:
        return bounce(f"hive {me!r} does not take messages from hive {subject.origin!r}")
    size = len(wire.body.encode("utf-8", errors="surrogatepass"))
    if size > max_body_bytes:
        return bounce(f"the body is {size} bytes, over hive {me!r}'s {max_body_bytes}-byte limit")
    sender = f"{subject.sender}@{subject.origin}"
    token = subject.recipient_token
    if token == BROADCAST_TOKEN:
        names = [r[0] for r in conn.execute("SELECT name FROM agents ORDER BY name") if r[0] not in isolated]
    else:
        if token in isolated or (
            token not in (MANAGER_AGENT, OPERATOR) and not broker_sql.is_known_recipient(conn, token)
        ):
            return bounce(f"no agent {token!r} on hive {me!r}")
        names = [token]
    inserted = [broker_sql.notice_tx(conn, sender=sender, recipient=n, body=wire.body, now=now) for n in names]
    return Accepted(messages=[m for m in inserted if m is not None])


def stats(conn: apsw.Connection) -> OutboxStats:
    row = conn.execute(
        "SELECT count(*), min(queued_at) FROM outbox WHERE forwarded_at IS NULL AND failed_at IS NULL"
    ).fetchone()
    assert row is not None
    return OutboxStats(depth=int(row[0]), oldest_queued_at=row[1])


def vacuum_tx(conn: apsw.Connection, *, older_than: float) -> int:
    """Forget forwarded or failed rows, and dedup keys, older than the retention period."""
    conn.execute(
        "DELETE FROM outbox WHERE coalesce(forwarded_at, failed_at) < ?",
        (older_than,),
    )
    dropped = conn.changes()
    conn.execute("DELETE FROM federation_received WHERE received_at < ?", (older_than,))
    return dropped + conn.changes()


def accept_all_tx(
    conn: apsw.Connection,
    arrivals: Sequence[Arrival],
    *,
    me: str,
    now: float,
    max_body_bytes: int,
    isolated: Collection[str],
    allows_peer: Callable[[str], bool],
) -> list[Accepted]:
    """A fetched batch in one transaction: messages into inboxes (once), bounces to their senders."""
    out = []
    for a in arrivals:
        if isinstance(a.wire, WireBounce):
            notice = bounce_received_tx(
                conn, from_hive=a.subject.origin, sender=a.subject.recipient_token, bounce=a.wire, now=now
            )
            out.append(Accepted(messages=[notice] if notice else []))
        else:
            out.append(
                accept_tx(
                    conn,
                    me=me,
                    subject=a.subject,
                    wire=a.wire,
                    now=now,
                    max_body_bytes=max_body_bytes,
                    isolated=isolated,
                    peer_allowed=allows_peer(a.subject.origin),
                )
            )
    return out


class Outbox:
    """Routes the functions above through the database's writer (and reader), as `Broker` does."""

    def __init__(self, db: Database, *, clock: Callable[[], float], max_body_bytes: int) -> None:
        self._db = db
        self._clock = clock
        self._max_body_bytes = max_body_bytes

    async def queue(self, *, origin: str, sender: str, address: RemoteAddress, body: str) -> Message:
        broker_sql.check_body(body, max_body_bytes=self._max_body_bytes)
        now = self._clock()
        return await self._db.write(
            lambda c: queue_remote_tx(
                c,
                origin=origin,
                sender=sender,
                address=address,
                body=body,
                now=now,
                max_body_bytes=self._max_body_bytes,
            )
        )

    async def pending(self, *, limit: int, skip_hives: Collection[str] = ()) -> list[OutboxItem]:
        return await self._db.read(lambda c: pending(c, limit=limit, skip_hives=skip_hives))

    async def settle(self, *, forwarded: Sequence[int], failed: Sequence[tuple[int, str]]) -> list[Message]:
        now = self._clock()

        def tx(conn: apsw.Connection) -> list[Message]:
            mark_forwarded_tx(conn, ids=forwarded, now=now)
            notices = [fail_tx(conn, outbox_id=i, reason=r, now=now) for i, r in failed]
            return [n for n in notices if n is not None]

        return await self._db.write(tx)

    async def accept(
        self,
        arrivals: Sequence[Arrival],
        *,
        me: str,
        isolated: Collection[str],
        allows_peer: Callable[[str], bool],
    ) -> list[Accepted]:
        now = self._clock()
        return await self._db.write(
            lambda c: accept_all_tx(
                c,
                arrivals,
                me=me,
                now=now,
                max_body_bytes=self._max_body_bytes,
                isolated=isolated,
                allows_peer=allows_peer,
            )
        )

    async def stats(self) -> OutboxStats:
        return await self._db.read(stats)

    async def vacuum(self, *, retention_seconds: float) -> int:
        cutoff = self._clock() - retention_seconds
        return await self._db.write(lambda c: vacuum_tx(c, older_than=cutoff))


__all__ = [
    "Accepted",
    "Arrival",
    "Outbox",
    "OutboxItem",
    "OutboxStats",
    "accept_tx",
    "bounce_received_tx",
    "fail_tx",
    "mark_forwarded_tx",
    "pending",
    "queue_bounce_tx",
    "queue_remote_tx",
    "stats",
    "vacuum_tx",
]
