"""Questions with deadlines (hyperhive's `OperatorQuestions`), to the operator or to a peer agent.

Answering is a compare-and-set from unanswered. The deadline is a stored timestamp, so a question whose
deadline passed while the daemon was down is still found by `expired_tx` at the next start; hyperhive's
in-process timers lose those. Rows are an audit trail and are never deleted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Final

import apsw

from hive_trio.errors import Conflict, InvalidRequest, NotFound
from hive_trio.records import CANCELLED_ANSWER, EXPIRED_ANSWER, TTL_ANSWERER, Question
from hive_trio.store.database import Database

_COLUMNS: Final = (
    "id, asker, question, asked_at, target, options, multi, default_answer, deadline_at, answer, answerer,"
    " cancelled, answered_at"
)


def _row(r: Sequence[Any]) -> Question:
    return Question(
        id=r[0],
        asker=r[1],
        question=r[2],
        asked_at=r[3],
        target=r[4],
        options=list(json.loads(r[5])),
        multi=bool(r[6]),
        default_answer=r[7],
        deadline_at=r[8],
        answer=r[9],
        answerer=r[10],
        cancelled=bool(r[11]),
        answered_at=r[12],
    )


def ask_tx(
    conn: apsw.Connection,
    *,
    asker: str,
    question: str,
    now: float,
    options: Sequence[str] = (),
    multi: bool = False,
    default_answer: str | None = None,
    ttl_seconds: float | None = None,
    target: str | None = None,
) -> Question:
    if not question.strip():
        raise InvalidRequest("question is empty")
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise InvalidRequest("ttl_seconds must be positive")
    if multi and not options:
        raise InvalidRequest("a multi-choice question needs options")
    deadline = None if ttl_seconds is None else now + ttl_seconds
    row = conn.execute(
        "INSERT INTO questions (asker, target, question, options, multi, default_answer, deadline_at, asked_at)"
        f" VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
        (asker, target, question, json.dumps(list(options)), int(multi), default_answer, deadline, now),
    ).fetchone()
    assert row is not None
    return _row(row)


def get(conn: apsw.Connection, question_id: int) -> Question | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM questions WHERE id = ?", (question_id,)).fetchone()
    return _row(row) if row else None


def require(conn: apsw.Connection, question_id: int) -> Question:
    found = get(conn, question_id)
    if found is None:
        raise NotFound(f"no question #{question_id}")
    return found


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
        f" WHERE id = ? AND answer IS NULL RETURNING {_COLUMNS}",
        (answer, answerer, now, int(cancelled), question_id),
    ).fetchone()
    if row is None:
        current = require(conn, question_id)
        raise Conflict(f"question #{question_id} was already answered by {current.answerer}")
    return _row(row)


def cancel_tx(conn: apsw.Connection, *, question_id: int, by: str, now: float) -> Question:
    return answer_tx(conn, question_id=question_id, answer=CANCELLED_ANSWER, answerer=by, now=now, cancelled=True)


def list_open_tx(conn: apsw.Connection, *, operator_only: bool) -> list[Question]:
    where = "answer IS NULL" + (" AND target IS NULL" if operator_only else "")
    return [_row(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM questions WHERE {where} ORDER BY id")]


def list_all_tx(conn: apsw.Connection, *, limit: int) -> list[Question]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM questions ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [_row(r) for r in reversed(rows)]


def next_deadline(conn: apsw.Connection) -> float | None:
    row = conn.execute("SELECT min(deadline_at) FROM questions WHERE answer IS NULL").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def expire_tx(conn: apsw.Connection, *, now: float) -> list[Question]:
    """Resolve every open question whose deadline has passed: its default, else `[expired]` by `ttl`."""
    rows = conn.execute(
        f"UPDATE questions SET answer = coalesce(default_answer, ?), answerer = ?, answered_at = ?"
        f" WHERE answer IS NULL AND deadline_at IS NOT NULL AND deadline_at <= ? RETURNING {_COLUMNS}",
        (EXPIRED_ANSWER, TTL_ANSWERER, now, now),
    ).fetchall()
    return sorted((_row(r) for r in rows), key=lambda q: q.id)


class OperatorQuestions:
    def __init__(self, db: Database, *, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    async def ask(
        self,
        asker: str,
        question: str,
        *,
        options: Sequence[str] = (),
        multi: bool = False,
        default_answer: str | None = None,
        ttl_seconds: float | None = None,
        target: str | None = None,
    ) -> Question:
        now = self.clock()
        return await self.db.write(
            lambda c: ask_tx(
                c,
                asker=asker,
                question=question,
                now=now,
                options=options,
                multi=multi,
                default_answer=default_answer,
                ttl_seconds=ttl_seconds,
                target=target,
            )
        )

    async def get(self, question_id: int) -> Question:
        return await self.db.read(lambda c: require(c, question_id))

    async def list_open(self, *, operator_only: bool = False) -> list[Question]:
        return await self.db.read(lambda c: list_open_tx(c, operator_only=operator_only))

    async def list_recent(self, *, limit: int = 100) -> list[Question]:
        return await self.db.read(lambda c: list_all_tx(c, limit=limit))

    async def next_deadline(self) -> float | None:
        return await self.db.read(next_deadline)
