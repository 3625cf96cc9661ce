"""Resolutions that commit with the daemon's notice about them, in one transaction, on a plain connection.

hive-c0re stores a decision and notifies afterwards; a crash in between leaves an approval decided that
the manager never hears of, or a question answered that its asker never learns. Here the resolution,
the `system` notice (and, for a deploy, the roster change it implies) commit together or not at all.
These are the only writers of resolved approvals and questions; the coordinator announces what they
return. Like every store module it never imports trio, the event hub or a socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import apsw

from hive_trio.records import (
    MANAGER_AGENT,
    SYSTEM_SENDER,
    Approval,
    ApprovalVerdict,
    HelperApprovalResolved,
    HelperEvent,
    HelperQuestionAnswered,
    Message,
    Question,
    to_json,
)
from hive_trio.store import approvals, broker, questions, roster
from hive_trio.store.database import StoreFace

T = TypeVar("T")
# A resolved row and the notice that went with it (None when its recipient has no inbox any more).
Resolved = tuple[T, Message | None]


def approvals_resolved_tx(
    conn: apsw.Connection,
    resolved: list[Approval],
    *,
    now: float,
    tag: str | None = None,
    roster_update: Mapping[str, Any] | None = None,
) -> list[Resolved[Approval]]:
    """For each resolved approval: its roster change, and the manager's `approval_resolved` notice."""
    out: list[Resolved[Approval]] = []
    for a in resolved:
        if roster_update:
            roster.update_tx(conn, name=a.agent, **roster_update)
        event = HelperApprovalResolved(id=a.id, agent=a.agent, status=a.status, note=a.note, sha=a.fetched_sha, tag=tag)
        body = to_json(event, HelperEvent)
        # Looked up on the module so a fault-injection test can replace it.
        out.append((a, broker.notice_tx(conn, sender=SYSTEM_SENDER, recipient=MANAGER_AGENT, body=body, now=now)))
    return out


def questions_resolved_tx(conn: apsw.Connection, resolved: list[Question], *, now: float) -> list[Resolved[Question]]:
    """For each resolved question: the asker's `question_answered` notice."""
    out: list[Resolved[Question]] = []
    for q in resolved:
        assert q.answer is not None and q.answerer is not None
        event = HelperQuestionAnswered(id=q.id, question=q.question, answer=q.answer, answerer=q.answerer)
        body = to_json(event, HelperEvent)
        out.append((q, broker.notice_tx(conn, sender=SYSTEM_SENDER, recipient=q.asker, body=body, now=now)))
    return out


class Resolutions(StoreFace):
    """The async face of the transactions above: one `Database.write` each."""

    async def resolve_approval(self, approval_id: int, verdict: ApprovalVerdict) -> Resolved[Approval]:
        """Compare-and-set from `pending`; `Conflict` (and nothing changes) if it was not pending."""
        now = self.clock()

        def tx(conn: apsw.Connection) -> list[Resolved[Approval]]:
            v = verdict
            resolved = approvals.resolve_tx(conn, approval_id=approval_id, status=v.status, note=v.note, now=now)
            return approvals_resolved_tx(conn, [resolved], now=now, tag=v.tag, roster_update=v.roster_update)

        (pair,) = await self.db.write(tx)
        return pair

    async def fail_pending_approvals(self, agent: str, *, note: str) -> list[Resolved[Approval]]:
        now = self.clock()

        def tx(conn: apsw.Connection) -> list[Resolved[Approval]]:
            failed = approvals.fail_pending_for_tx(conn, agent=agent, note=note, now=now)
            return approvals_resolved_tx(conn, failed, now=now)

        return await self.db.write(tx)

    async def answer_question(self, question_id: int, answer: str, *, answerer: str) -> Resolved[Question]:
        now = self.clock()

        def tx(conn: apsw.Connection) -> list[Resolved[Question]]:
            q = questions.answer_tx(conn, question_id=question_id, answer=answer, answerer=answerer, now=now)
            return questions_resolved_tx(conn, [q], now=now)

        (pair,) = await self.db.write(tx)
        return pair

    async def cancel_question(self, question_id: int, *, by: str) -> Resolved[Question]:
        now = self.clock()

        def tx(conn: apsw.Connection) -> list[Resolved[Question]]:
            q = questions.cancel_tx(conn, question_id=question_id, by=by, now=now)
            return questions_resolved_tx(conn, [q], now=now)

        (pair,) = await self.db.write(tx)
        return pair

    async def expire_questions(self) -> list[Resolved[Question]]:
        now = self.clock()
        return await self.db.write(lambda c: questions_resolved_tx(c, questions.expire_tx(c, now=now), now=now))


__all__ = ["Resolutions", "Resolved", "approvals_resolved_tx", "questions_resolved_tx"]
