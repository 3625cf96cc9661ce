"""The `agents` table: which agents exist and what the operator wants of them (not what is running).

A row is created by spawn and removed by destroy; the state dir outliving it is a tombstone. What is
actually running is the lifecycle backend's to say; reconcile compares the two at start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import apsw

from hive_trio.errors import Conflict, UnknownAgent
from hive_trio.records import AgentRecord
from hive_trio.store import broker
from hive_trio.store.columns import Columns
from hive_trio.store.database import StoreFace

_COLUMNS: Final = Columns(
    AgentRecord, convert={"failed": bool, "paused": bool, "needs_update": bool, "needs_login": bool}
)
UPDATABLE: Final = frozenset(
    {
        "parent",
        "desired",
        "failed",
        "paused",
        "needs_update",
        "needs_login",
        "deployed_sha",
        "active_model",
        "status_text",
        "status_set_at",
        "failed_reason",
    }
)


def add_tx(conn: apsw.Connection, *, name: str, parent: str | None, now: float) -> AgentRecord:
    if get(conn, name) is not None:
        raise Conflict(f"agent {name!r} already exists")
    row = conn.execute(
        f"INSERT INTO agents (name, created_at, parent) VALUES (?, ?, ?) RETURNING {_COLUMNS.sql}",
        (name, now, parent),
    ).fetchone()
    assert row is not None
    return _COLUMNS.read(row)


def remove_tx(conn: apsw.Connection, *, name: str) -> bool:
    conn.execute("DELETE FROM agents WHERE name = ?", (name,))
    return conn.changes() > 0


def update_tx(conn: apsw.Connection, *, name: str, **fields: Any) -> AgentRecord:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    if fields:
        assignments = ", ".join(f"{k} = ?" for k in fields)
        conn.execute(f"UPDATE agents SET {assignments} WHERE name = ?", (*fields.values(), name))
    record = get(conn, name)
    if record is None:
        raise UnknownAgent(name)
    return record


def get(conn: apsw.Connection, name: str) -> AgentRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS.sql} FROM agents WHERE name = ?", (name,)).fetchone()
    return _COLUMNS.read(row) if row else None


def list_all(conn: apsw.Connection) -> list[AgentRecord]:
    return [_COLUMNS.read(r) for r in conn.execute(f"SELECT {_COLUMNS.sql} FROM agents ORDER BY name")]


def list_named(conn: apsw.Connection, names: Sequence[str]) -> list[AgentRecord]:
    """The rows of `names` only: one agent's status change must not read the whole roster."""
    found = (get(conn, name) for name in dict.fromkeys(names))
    return sorted((r for r in found if r is not None), key=lambda r: r.name)


class Roster(StoreFace):
    async def add(self, name: str, *, parent: str | None = None) -> AgentRecord:
        now = self.clock()
        return await self.db.write(lambda c: add_tx(c, name=name, parent=parent, now=now))

    async def remove(self, name: str) -> bool:
        return await self.db.write(lambda c: remove_tx(c, name=name))

    async def update(self, name: str, **fields: Any) -> AgentRecord:
        return await self.db.write(lambda c: update_tx(c, name=name, **fields))

    async def get(self, name: str) -> AgentRecord | None:
        return await self.db.read(lambda c: get(c, name))

    async def require(self, name: str) -> AgentRecord:
        record = await self.get(name)
        if record is None:
            raise UnknownAgent(name)
        return record

    async def with_pending_counts(self, names: Sequence[str] | None = None) -> tuple[list[AgentRecord], dict[str, int]]:
        """Rows (all, or those of `names`) and their inbox depths, in one read so the two agree.

        One agent's change is published per event: with `names` only those rows are read (reading
        the whole roster per event made a 1,000-agent reconcile quadratic).
        """
        if names is None:
            return await self.db.read(lambda c: (list_all(c), broker.pending_counts(c)))
        wanted = list(names)
        return await self.db.read(lambda c: (list_named(c, wanted), broker.pending_counts_for(c, wanted)))

    async def all(self) -> list[AgentRecord]:
        return await self.db.read(list_all)
