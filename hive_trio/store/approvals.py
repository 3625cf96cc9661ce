"""The approval queue (hyperhive's `Approvals`): what agents propose and the operator decides.

Resolving is a compare-and-set from `pending`, so two operators clicking approve at once, or an
approve racing a deny, change the row exactly once; the loser gets `Conflict` and nothing moves.
Rows are an audit trail and are never deleted.
"""

from __future__ import annotations

from typing import Final

import apsw

from hive_trio.errors import Conflict
from hive_trio.records import Approval, ApprovalDraft, ApprovalKind, ApprovalStatus
from hive_trio.store.columns import Columns, require_by_id
from hive_trio.store.database import StoreFace

_COLUMNS: Final = Columns(Approval, convert={"kind": ApprovalKind, "status": ApprovalStatus})


def add_tx(conn: apsw.Connection, draft: ApprovalDraft, *, now: float) -> Approval:
    row = conn.execute(
        "INSERT INTO approvals (agent, kind, commit_ref, description, requested_at, requested_by)"
        f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS.sql}",
        (draft.agent, draft.kind.value, draft.commit_ref, draft.description, now, draft.requested_by),
    ).fetchone()
    assert row is not None
    return _COLUMNS.read(row)


def require(conn: apsw.Connection, approval_id: int) -> Approval:
    return require_by_id(conn, _COLUMNS, "approvals", approval_id, noun="approval")


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
        f" WHERE id = ? AND status = ? RETURNING {_COLUMNS.sql}",
        (status.value, note, now, approval_id, expect.value),
    ).fetchone()
    if row is None:
        current = require(conn, approval_id)
        raise Conflict(f"approval #{approval_id} is already {current.status.value}")
    return _COLUMNS.read(row)


def list_tx(conn: apsw.Connection, *, status: ApprovalStatus | None) -> list[Approval]:
    if status is None:
        cur = conn.execute(f"SELECT {_COLUMNS.sql} FROM approvals ORDER BY id")
    else:
        cur = conn.execute(f"SELECT {_COLUMNS.sql} FROM approvals WHERE status = ? ORDER BY id", (status.value,))
    return [_COLUMNS.read(r) for r in cur]


def fail_pending_for_tx(conn: apsw.Connection, *, agent: str, note: str, now: float) -> list[Approval]:
    rows = conn.execute(
        f"UPDATE approvals SET status = 'failed', note = ?, resolved_at = ?"
        f" WHERE agent = ? AND status = 'pending' RETURNING {_COLUMNS.sql}",
        (note, now, agent),
    ).fetchall()
    return sorted((_COLUMNS.read(r) for r in rows), key=lambda a: a.id)


class Approvals(StoreFace):
    async def add(self, draft: ApprovalDraft) -> Approval:
        now = self.clock()
        return await self.db.write(lambda c: add_tx(c, draft, now=now))

    async def set_fetched(self, approval_id: int, *, fetched_sha: str, diff: str) -> Approval:
        return await self.db.write(
            lambda c: set_fetched_tx(c, approval_id=approval_id, fetched_sha=fetched_sha, diff=diff)
        )

    async def get(self, approval_id: int) -> Approval:
        return await self.db.read(lambda c: require(c, approval_id))

    async def query(self, *, status: ApprovalStatus | None = None) -> list[Approval]:
        return await self.db.read(lambda c: list_tx(c, status=status))
