"""Per-agent transcripts (table `transcript`): each turn's start, stream events and end, as the harness reported them.

Retention is bounded three ways, so a chatty or hostile harness cannot grow `hive.db` without limit:
each entry's text and tool input are cut to a size cap when written (marked as cut), each agent keeps
at most its newest `max_rows` entries (older ones go in the same transaction as the insert), and
`vacuum_tx` drops entries older than the retention age. Functions of a plain APSW connection; it knows
nothing of sockets, tasks or the dashboard.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import apsw

from hive_trio.records.harness import TranscriptEntry, TranscriptKind, TurnOutcome

TRUNCATED_MARK: Final = "… [cut by the daemon: {size} bytes in all]"
_COLUMNS: Final = (
    "id, agent, turn_id, kind, at, text, tool, input_json, is_error, outcome, message_ids, model, tokens, cost_usd"
)


def cap_text(text: str | None, max_bytes: int) -> str | None:
    """`text` cut to at most about `max_bytes` UTF-8 bytes, saying how long it was."""
    if text is None:
        return None
    # Lone surrogates were refused when the arguments were decoded; `replace` is only a backstop.
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= max_bytes:
        return text
    head = raw[:max_bytes].decode("utf-8", errors="ignore")
    return head + TRUNCATED_MARK.format(size=len(raw))


def cap_json(value: Any, max_bytes: int) -> str | None:
    """A tool input as JSON text, cut (then no longer JSON, and marked so) when over `max_bytes`."""
    if value is None:
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return cap_text(text, max_bytes)


def _row(r: Sequence[Any]) -> TranscriptEntry:
    return TranscriptEntry(
        id=r[0],
        agent=r[1],
        turn_id=r[2],
        kind=TranscriptKind(r[3]),
        at=r[4],
        text=r[5],
        tool=r[6],
        input_json=r[7],
        is_error=bool(r[8]),
        outcome=TurnOutcome(r[9]) if r[9] is not None else None,
        message_ids=list(json.loads(r[10])),
        model=r[11],
        tokens=r[12],
        cost_usd=r[13],
    )


def append_tx(
    conn: apsw.Connection,
    *,
    agent: str,
    turn_id: str,
    kind: TranscriptKind,
    now: float,
    max_rows: int,
    text: str | None = None,
    tool: str | None = None,
    input_json: str | None = None,
    is_error: bool = False,
    outcome: TurnOutcome | None = None,
    message_ids: Sequence[int] = (),
    model: str | None = None,
    tokens: int = 0,
    cost_usd: float | None = None,
) -> TranscriptEntry:
    """Add one entry (already size-capped by the caller) and drop the agent's entries past `max_rows`."""
    row = conn.execute(
        "INSERT INTO transcript (agent, turn_id, kind, at, text, tool, input_json, is_error, outcome, message_ids,"
        f" model, tokens, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
        (
            agent,
            turn_id,
            kind.value,
            now,
            text,
            tool,
            input_json,
            int(is_error),
            None if outcome is None else outcome.value,
            json.dumps(list(message_ids)),
            model,
            tokens,
            cost_usd,
        ),
    ).fetchone()
    assert row is not None
    entry = _row(row)
    # The newest `max_rows` stay; the cut-off is found through the (agent, id) index.
    conn.execute(
        "DELETE FROM transcript WHERE agent = ? AND id <= ("
        " SELECT id FROM transcript WHERE agent = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (agent, agent, max_rows),
    )
    return entry


def list_tx(conn: apsw.Connection, *, agent: str, limit: int, since: int | None = None) -> list[TranscriptEntry]:
    """Oldest first: the entries after id `since` (the first `limit` of them), else the newest `limit`."""
    if since is not None:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM transcript WHERE agent = ? AND id > ? ORDER BY id LIMIT ?", (agent, since, limit)
        ).fetchall()
        return [_row(r) for r in rows]
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM transcript WHERE agent = ? ORDER BY id DESC LIMIT ?", (agent, limit)
    ).fetchall()
    return [_row(r) for r in reversed(rows)]


def vacuum_tx(conn: apsw.Connection, *, older_than: float) -> int:
    conn.execute("DELETE FROM transcript WHERE at < ?", (older_than,))
    return conn.changes()


def forget_agent_tx(conn: apsw.Connection, *, agent: str) -> int:
    conn.execute("DELETE FROM transcript WHERE agent = ?", (agent,))
    return conn.changes()


__all__ = ["append_tx", "cap_json", "cap_text", "forget_agent_tx", "list_tx", "vacuum_tx"]
