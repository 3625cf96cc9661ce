"""Reminders (hyperhive's `remind`, table `reminders`): messages an agent schedules to itself for later.

A reminder is durable from the moment `add_tx` commits. `deliver_due_tx` turns every reminder whose
time has come into a message from `system` in the agent's inbox, in the same transaction that marks it
delivered, so a crash delivers each reminder exactly once, and one due while the daemon was down goes
out at the next start. Functions of a plain APSW connection; no sockets, no tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import apsw

from hive_trio.errors import InvalidRequest
from hive_trio.records import SYSTEM_SENDER, Message
from hive_trio.records.harness import Reminder
from hive_trio.store import broker as broker_sql

_COLUMNS: Final = "id, agent, body, due_at, created_at, delivered_at, message_id"
REMINDER_TEXT: Final = "⏰ Reminder you set for yourself (#{id}, at {created}):\n\n{body}"


def _row(r: Sequence[Any]) -> Reminder:
    return Reminder(id=r[0], agent=r[1], body=r[2], due_at=r[3], created_at=r[4], delivered_at=r[5], message_id=r[6])


def add_tx(
    conn: apsw.Connection, *, agent: str, body: str, due_at: float, now: float, max_pending: int, max_body_bytes: int
) -> Reminder:
    if not body.strip():
        raise InvalidRequest("remind: body is empty")
    broker_sql.check_body(body, max_body_bytes=max_body_bytes)
    count = conn.execute("SELECT count(*) FROM reminders WHERE agent = ? AND delivered_at IS NULL", (agent,)).fetchone()
    pending = int(count[0]) if count else 0
    if pending >= max_pending:
        raise InvalidRequest(f"remind: {agent} already has {pending} pending reminders (the limit is {max_pending})")
    row = conn.execute(
        f"INSERT INTO reminders (agent, body, due_at, created_at) VALUES (?, ?, ?, ?) RETURNING {_COLUMNS}",
        (agent, body, due_at, now),
    ).fetchone()
    assert row is not None
    return _row(row)


def deliver_due_tx(
    conn: apsw.Connection, *, now: float, render: Callable[[Reminder], str]
) -> list[tuple[Reminder, Message | None]]:
    """Every due reminder becomes a message from `system` (`render(reminder)` is its body).

    A reminder whose agent has no inbox any more (destroyed) is marked delivered with no message.
    """
    due = [
        _row(r)
        for r in conn.execute(
            f"SELECT {_COLUMNS} FROM reminders WHERE delivered_at IS NULL AND due_at <= ? ORDER BY due_at, id", (now,)
        )
    ]
    out: list[tuple[Reminder, Message | None]] = []
    for reminder in due:
        message = broker_sql.notice_tx(
            conn, sender=SYSTEM_SENDER, recipient=reminder.agent, body=render(reminder), now=now
        )
        row = conn.execute(
            f"UPDATE reminders SET delivered_at = ?, message_id = ? WHERE id = ? RETURNING {_COLUMNS}",
            (now, None if message is None else message.id, reminder.id),
        ).fetchone()
        assert row is not None
        out.append((_row(row), message))
    return out


def next_due(conn: apsw.Connection) -> float | None:
    row = conn.execute("SELECT min(due_at) FROM reminders WHERE delivered_at IS NULL").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def pending_tx(conn: apsw.Connection, *, agent: str) -> list[Reminder]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM reminders WHERE agent = ? AND delivered_at IS NULL ORDER BY due_at, id", (agent,)
    )
    return [_row(r) for r in rows]


def pending_counts(conn: apsw.Connection, names: Sequence[str] | None = None) -> dict[str, int]:
    if names is None:
        rows = conn.execute("SELECT agent, count(*) FROM reminders WHERE delivered_at IS NULL GROUP BY agent")
    else:
        marks = ", ".join("?" * len(names)) or "NULL"
        rows = conn.execute(
            f"SELECT agent, count(*) FROM reminders WHERE delivered_at IS NULL AND agent IN ({marks}) GROUP BY agent",
            tuple(names),
        )
    return {r[0]: r[1] for r in rows}


def forget_agent_tx(conn: apsw.Connection, *, agent: str) -> int:
    conn.execute("DELETE FROM reminders WHERE agent = ? AND delivered_at IS NULL", (agent,))
    return conn.changes()


__all__ = ["REMINDER_TEXT", "add_tx", "deliver_due_tx", "forget_agent_tx", "next_due", "pending_counts", "pending_tx"]
