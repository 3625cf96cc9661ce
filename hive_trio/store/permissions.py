"""Permission requests (table `permissions`) and always-allow rules (table `permission_rules`).

A harness asks before its model uses a tool that needs permission; the operator allows or denies, and
a request nobody decides is denied at its deadline (the stored `deadline_at`, so deadlines that passed
while the daemon was down are found at the next start, as with questions). Deciding is a
compare-and-set from open: deciding twice is a `Conflict` and changes nothing. Rows are an audit trail
of who decided and how, never deleted. Functions of a plain APSW connection; no sockets, no tasks.
"""

from __future__ import annotations

from typing import Final

import apsw

from hive_trio.errors import Conflict
from hive_trio.records.harness import RULE_DECIDER, TTL_DECIDER, PermissionDecision, PermissionRequest
from hive_trio.store.columns import Columns, require_by_id

_COLUMNS: Final = Columns(
    PermissionRequest,
    convert={"decision": lambda v: None if v is None else PermissionDecision(v), "always": bool},
)
EXPIRED_REASON: Final = "nobody decided before the deadline; denied by default"


def has_rule(conn: apsw.Connection, *, agent: str, tool: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM permission_rules WHERE agent = ? AND tool = ?", (agent, tool)).fetchone()
        is not None
    )


def request_tx(
    conn: apsw.Connection, *, agent: str, tool: str, input_json: str, now: float, ttl_seconds: float
) -> PermissionRequest:
    """Record a request. An always-allow rule for (agent, tool) decides it at once, on the record too."""
    if has_rule(conn, agent=agent, tool=tool):
        row = conn.execute(
            "INSERT INTO permissions (agent, tool, input_json, requested_at, deadline_at, decision, decided_by,"
            f" always, decided_at, reason) VALUES (?, ?, ?, ?, ?, 'allow', ?, 1, ?, ?) RETURNING {_COLUMNS.sql}",
            (agent, tool, input_json, now, now, RULE_DECIDER, now, f"{tool} is always allowed for {agent}"),
        ).fetchone()
    else:
        row = conn.execute(
            "INSERT INTO permissions (agent, tool, input_json, requested_at, deadline_at)"
            f" VALUES (?, ?, ?, ?, ?) RETURNING {_COLUMNS.sql}",
            (agent, tool, input_json, now, now + ttl_seconds),
        ).fetchone()
    assert row is not None
    return _COLUMNS.read(row)


def open_count(conn: apsw.Connection, *, agent: str) -> int:
    row = conn.execute("SELECT count(*) FROM permissions WHERE agent = ? AND decision IS NULL", (agent,)).fetchone()
    return int(row[0]) if row else 0


def require(conn: apsw.Connection, request_id: int) -> PermissionRequest:
    return require_by_id(conn, _COLUMNS, "permissions", request_id, noun="permission request")


def decide_tx(
    conn: apsw.Connection,
    *,
    request_id: int,
    decision: PermissionDecision,
    decided_by: str,
    now: float,
    always: bool = False,
    reason: str | None = None,
) -> PermissionRequest:
    """Decide an open request (compare-and-set); `always` with allow also records the rule."""
    row = conn.execute(
        "UPDATE permissions SET decision = ?, decided_by = ?, always = ?, decided_at = ?, reason = ?"
        f" WHERE id = ? AND decision IS NULL RETURNING {_COLUMNS.sql}",
        (decision.value, decided_by, int(always), now, reason, request_id),
    ).fetchone()
    if row is None:
        current = require(conn, request_id)
        assert current.decision is not None
        raise Conflict(
            f"permission request #{request_id} was already decided: {current.decision.value} by {current.decided_by}"
        )
    decided = _COLUMNS.read(row)
    if always and decision is PermissionDecision.ALLOW:
        conn.execute(
            "INSERT OR IGNORE INTO permission_rules (agent, tool, created_at, created_by) VALUES (?, ?, ?, ?)",
            (decided.agent, decided.tool, now, decided_by),
        )
    return decided


def expire_tx(conn: apsw.Connection, *, now: float) -> list[PermissionRequest]:
    """Deny every open request whose deadline has passed, decided by `ttl`."""
    rows = conn.execute(
        "UPDATE permissions SET decision = 'deny', decided_by = ?, decided_at = ?, reason = ?"
        f" WHERE decision IS NULL AND deadline_at <= ? RETURNING {_COLUMNS.sql}",
        (TTL_DECIDER, now, EXPIRED_REASON, now),
    ).fetchall()
    return sorted((_COLUMNS.read(r) for r in rows), key=lambda p: p.id)


def next_deadline(conn: apsw.Connection) -> float | None:
    row = conn.execute("SELECT min(deadline_at) FROM permissions WHERE decision IS NULL").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def list_open_tx(conn: apsw.Connection) -> list[PermissionRequest]:
    return [
        _COLUMNS.read(r)
        for r in conn.execute(f"SELECT {_COLUMNS.sql} FROM permissions WHERE decision IS NULL ORDER BY id")
    ]


def list_recent_tx(conn: apsw.Connection, *, limit: int) -> list[PermissionRequest]:
    rows = conn.execute(f"SELECT {_COLUMNS.sql} FROM permissions ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [_COLUMNS.read(r) for r in reversed(rows)]


def rules_tx(conn: apsw.Connection, *, agent: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT tool FROM permission_rules WHERE agent = ? ORDER BY tool", (agent,))]


def forget_agent_tx(conn: apsw.Connection, *, agent: str) -> None:
    """A destroyed agent's rules go (a new agent of that name starts with none); its requests stay on record."""
    conn.execute("DELETE FROM permission_rules WHERE agent = ?", (agent,))


__all__ = [
    "EXPIRED_REASON",
    "decide_tx",
    "expire_tx",
    "forget_agent_tx",
    "has_rule",
    "list_open_tx",
    "list_recent_tx",
    "next_deadline",
    "open_count",
    "request_tx",
    "require",
    "rules_tx",
]
