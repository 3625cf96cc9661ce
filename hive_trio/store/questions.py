"""Questions with deadlines (hyperhive's `OperatorQuestions`), to the operator or to a peer agent.

Answering is a compare-and-set from unanswered. The deadline is a stored timestamp, so a question whose
deadline passed while the daemon was down is still found by `expired_tx` at the next start; hyperhive's
in-process timers lose those. Rows are an audit trail and are never deleted.
"""

from __future__ import annotations

import json
from typing import Final

import apsw

from hive_trio.errors import Conflict, InvalidRequest
from hive_trio.records import CANCELLED_ANSWER, EXPIRED_ANSWER, TTL_ANSWERER, Question, QuestionDraft
from hive_trio.store.columns import Columns, require_by_id
from hive_trio.store.database import StoreFace

_COLUMNS: Final = Columns(
    Question, convert={"options": lambda v: list(json.loads(v)), "multi": bool, "cancelled": bool}
)


def ask_tx(conn: apsw.Connection, draft: QuestionDraft, *, now: float) -> Question:
    asker, question, options, multi = draft.asker, draft.question, draft.options, draft.multi
    default_answer, ttl_seconds, target = draft.default_answer, draft.ttl_seconds, draft.target
    if not question.strip():
        raise InvalidRequest("question is empty")
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise InvalidRequest("ttl_seconds must be positive")
    if multi and not options:
        raise InvalidRequest("a multi-choice question needs options")
    deadline = None if ttl_seconds is None else now + ttl_seconds
    row = conn.execute(
        "INSERT INTO questions (asker, target, question, options, multi, default_answer, deadline_at, asked_at)"
        f" VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS.sql}",
        (asker, target, question, json.dumps(list(options)), int(multi), default_answer, deadline, now),
    ).fetchone()
    assert row is not None
    return _COLUMNS.read(row)


def require(conn: apsw.Connection, question_id: int) -> Question:
    return require_by_id(conn, _COLUMNS, "questions", question_id, noun="question")


def answer_tx(
    conn: apsw.Connection,
    *,
    question_id: int,
    answer: str,
    answerer: str,
    now: float,
    cancelled: bool = False,
) -> Question:
    """Set the answer if there is none yet; otherwise `Conflict` and nothing changes."""
    row = conn.execute(
        f"UPDATE questions SET answer = ?, answerer = ?, answered_at = ?, cancelled = ?"
        f" WHERE id = ? AND answer IS NULL RETURNING {_COLUMNS.sql}",
        (answer, answerer, now, int(cancelled), question_id),
    ).fetchone()
    if row is None:
        current = require(conn, question_id)
        raise Conflict(f"question #{question_id} was already answered by {current.answerer}")
    return _COLUMNS.read(row)


def cancel_tx(conn: apsw.Connection, *, question_id: int, by: str, now: float) -> Question:
    return answer_tx(conn, question_id=question_id, answer=CANCELLED_ANSWER, answerer=by, now=now, cancelled=True)


def list_open_tx(conn: apsw.Connection, *, operator_only: bool) -> list[Question]:
    where = "answer IS NULL" + (" AND target IS NULL" if operator_only else "")
    return [_COLUMNS.read(r) for r in conn.execute(f"SELECT {_COLUMNS.sql} FROM questions WHERE {where} ORDER BY id")]


def list_all_tx(conn: apsw.Connection, *, limit: int) -> list[Question]:
    rows = conn.execute(f"SELECT {_COLUMNS.sql} FROM questions ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [_COLUMNS.read(r) for r in reversed(rows)]


def next_deadline(conn: apsw.Connection) -> float | None:
    row = conn.execute("SELECT min(deadline_at) FROM questions WHERE answer IS NULL").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def expire_tx(conn: apsw.Connection, *, now: float) -> list[Question]:
    """Resolve every open question whose deadline has passed: its default, else `[expired]` by `ttl`."""
    rows = conn.execute(
        f"UPDATE questions SET answer = coalesce(default_answer, ?), answerer = ?, answered_at = ?"
        f" WHERE answer IS NULL AND deadline_at IS NOT NULL AND deadline_at <= ? RETURNING {_COLUMNS.sql}",
        (EXPIRED_ANSWER, TTL_ANSWERER, now, now),
    ).fetchall()
    return sorted((_COLUMNS.read(r) for r in rows), key=lambda q: q.id)


class OperatorQuestions(StoreFace):
    async def ask(self, draft: QuestionDraft) -> Question:
        now = self.clock()
        return await self.db.write(lambda c: ask_tx(c, draft, now=now))

    async def get(self, question_id: int) -> Question:
        return await self.db.read(lambda c: require(c, question_id))

    async def list_open(self, *, operator_only: bool = False) -> list[Question]:
        return await self.db.read(lambda c: list_open_tx(c, operator_only=operator_only))

    async def list_recent(self, *, limit: int = 100) -> list[Question]:
        return await self.db.read(lambda c: list_all_tx(c, limit=limit))

    async def next_deadline(self) -> float | None:
        return await self.db.read(next_deadline)
