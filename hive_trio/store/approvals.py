"""The approval queue (hyperhive's `Approvals`): what agents propose and the operator decides.

Resolving is a compare-and-set from `pending`, so two operators clicking approve at once, or an
approve racing a deny, change the row exactly once; the loser gets `Conflict` and nothing moves.
Rows are an audit trail and are never deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import apsw

from hive_trio.errors import Conflict, NotFound
from hive_trio.records import Approval, ApprovalKind, ApprovalStatus
from hive_trio.store.database import Database

_COLUMNS: Final = (
    "id, agent, kind, status, requested_at, commit_ref, fetched_sha, description, diff, note, resolved_at, requested_by"
)


def _row(r: Sequence[Any]) -> Approval:
    return Approval(
        id=r[0],
        agent=r[1],
        kind=ApprovalKind(r[2]),
        status=ApprovalStatus(r[3]),
        requested_at=r[4],
        commit_ref=r[5],
        fetched_sha=r[6],
        description=r[7],
        diff=r[8],
        note=r[9],
        resolved_at=r[10],
        requested_by=r[11],
    )


def add_tx(
    conn: apsw.Connection,
    *,
    agent: str,
    kind: ApprovalKind,
    now: float,
    commit_ref: str | None = None,
    description: str | None = None,
    requested_by: str | None = None,
) -> Approval:
    row = conn.execute(
        "INSERT INTO approvals (agent, kind, commit_ref, description, requested_at, requested_by)"
        f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
        (agent, kind.value, commit_ref, description, now, requested_by),
    ).fetchone()
    assert row is not None
    return _row(row)


def get(conn: apsw.Connection, approval_id: int) -> Approval | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)).fetchone()
    return _row(row) if row else None


def require(conn: apsw.Connection, approval_id: int) -> Approval:
    found = get(conn, approval_id)
    if found is None:
        raise NotFound(f"no approval #{approval_id}")
    return found


def set_fetched_tx(conn: apsw.Connection, *, approval_id: int, fetched_sha: str, diff: str) -> Approval:
    conn.execute(
        "UPDATE approvals SET fetched_sha = ?, diff = ? WHERE id = ? AND status = 'pending'",
        (fetched_sha, diff, approval_id),
    )
    return require(conn, approval_id)


def resolve_tx(
    conn: apsw.Connection,
    *,
    approval_id: int,
    status: ApprovalStatus,
    note: str | None,
    now: float,
    expect: ApprovalStatus = ApprovalStatus.PENDING,
) -> Approval:
    """Move `approval_id` from `expect` to `status`, or raise `Conflict` and change nothing."""
    if status is ApprovalStatus.PENDING:
        raise ValueError("cannot resolve to pending")
    row = conn.execute(
        f"UPDATE approvals SET status = ?, note = coalesce(?, note), resolved_at = ?"
        f" WHERE id = ? AND status = ? RETURNING {_COLUMNS}",
        (status.value, note, now, approval_id, expect.value),
    ).fetchone()
    if row is None:
        current = require(conn, approval_id)
        raise Conflict(f"approval #{approval_id} is already {current.status.value}")
    return _row(row)


def list_tx(conn: apsw.Connection, *, status: ApprovalStatus | None) -> list[Approval]:
    if status is None:
        cur = conn.execute(f"SELECT {_COLUMNS} FROM approvals ORDER BY id")
    else:
        cur = conn.execute(f"SELECT {_COLUMNS} FROM approvals WHERE status = ? ORDER BY id", (status.value,))
    return [_row(r) for r in cur]


def fail_pending_for_tx(conn: apsw.Connection, *, agent: str, note: str, now: float) -> list[Approval]:
    rows = conn.execute(
        f"UPDATE approvals SET status = 'failed', note = ?, resolved_at = ?"
        f" WHERE agent = ? AND status = 'pending' RETURNING {_COLUMNS}",
        (note, now, agent),
    ).fetchall()
    return sorted((_row(r) for r in rows), key=lambda a: a.id)


class Approvals:
    def __init__(self, db: Database, *, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    async def add(
        self,
        agent: str,
        kind: ApprovalKind,
        *,
        commit_ref: str | None = None,
        description: str | None = None,
        requested_by: str | None = None,
    ) -> Approval:
        now = self.clock()
        return await self.db.write(
            lambda c: add_tx(
                c,
                agent=agent,
                kind=kind,
                now=now,
                commit_ref=commit_ref,
                description=description,
                requested_by=requested_by,
            )
        )

    async def set_fetched(self, approval_id: int, *, fetched_sha: str, diff: str) -> Approval:
        return await self.db.write(
            lambda c: set_fetched_tx(c, approval_id=approval_id, fetched_sha=fetched_sha, diff=diff)
        )

    async def get(self, approval_id: int) -> Approval:
        return await self.db.read(lambda c: require(c, approval_id))

    async def query(self, *, status: ApprovalStatus | None = None) -> list[Approval]:
        return await self.db.read(lambda c: list_tx(c, status=status))
