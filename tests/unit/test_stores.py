"""The stores against a real sqlite file: broker leases, approval CAS, question deadlines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hive_trio.errors import Conflict, InvalidRequest, NotFound, TooLarge, UnknownAgent
from hive_trio.records import ApprovalDraft, ApprovalKind, ApprovalStatus, ApprovalVerdict, QuestionDraft
from hive_trio.store.approvals import Approvals
from hive_trio.store.broker import Broker
from hive_trio.store.database import Database
from hive_trio.store.notices import Resolutions
from hive_trio.store.questions import OperatorQuestions
from hive_trio.store.roster import Roster


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "hive.db")
    yield database
    database.close()


@pytest.fixture
async def broker(db: Database, clock: Clock) -> Broker:
    roster = Roster(db, clock=clock)
    for name in ("alpha", "beta"):
        await roster.add(name)
    return Broker(db, clock=clock, max_body_bytes=1024)


async def count_messages(db: Database) -> int:
    return int(await db.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0]))


# ------------------------------------------------------------------------------------------ broker


async def test_committed_message_survives_reopen(tmp_path: Path, clock: Clock) -> None:
    db = await Database.open(tmp_path / "hive.db")
    await Roster(db, clock=clock).add("alpha")
    sent = await Broker(db, clock=clock, max_body_bytes=100).send("operator", "alpha", "remember me")
    db.close()
    db = await Database.open(tmp_path / "hive.db")
    try:
        [got] = await Broker(db, clock=clock, max_body_bytes=100).deliver("alpha", limit=5)
        assert (got.id, got.body, got.sender) == (sent.id, "remember me", "operator")
    finally:
        db.close()


async def test_unknown_recipient_is_refused_and_creates_nothing(broker: Broker, db: Database) -> None:
    with pytest.raises(UnknownAgent, match="ghost"):
        await broker.send("alpha", "ghost", "hello?")
    assert await count_messages(db) == 0
    assert await broker.pending_count("ghost") == 0


async def test_manager_and_operator_inboxes_always_exist(broker: Broker) -> None:
    await broker.send("alpha", "manager", "m")
    await broker.send("alpha", "operator", "o")
    assert [await broker.pending_count(n) for n in ("manager", "operator", "alpha")] == [1, 1, 0]


async def test_per_recipient_order_is_send_order(broker: Broker) -> None:
    for i in range(10):
        await broker.send("alpha" if i % 2 else "operator", "beta", f"m{i}")
    got = await broker.deliver("beta", limit=4) + await broker.deliver("beta", limit=32)
    assert [m.body for m in got] == [f"m{i}" for i in range(10)]


async def test_body_limit_refuses_not_truncates(broker: Broker, db: Database) -> None:
    await broker.send("alpha", "beta", "x" * 1024)
    with pytest.raises(TooLarge, match="1025 bytes"):
        await broker.send("alpha", "beta", "x" * 1025)
    with pytest.raises(TooLarge):
        await broker.send("alpha", "beta", "é" * 513)  # counted in UTF-8 bytes
    assert await count_messages(db) == 1


async def test_lease_delivery_ack_and_requeue(broker: Broker, clock: Clock) -> None:
    a = await broker.send("alpha", "beta", "one")
    b = await broker.send("alpha", "beta", "two")
    [first] = await broker.deliver("beta", limit=1)
    assert first.id == a.id and first.delivered_at == clock.now and not first.redelivered
    assert await broker.ack("beta") == 1
    [second] = await broker.deliver("beta", limit=1)
    assert second.id == b.id
    # Not acked: a restart (or requeue_inflight) puts it back, marked redelivered.
    assert await broker.requeue_inflight("beta") == 1
    [again] = await broker.deliver("beta", limit=5)
    assert again.id == b.id and again.redelivered
    assert await broker.ack("beta") == 1
    # The acked ones never come back.
    assert await broker.requeue_inflight("beta") == 0
    assert await broker.deliver("beta", limit=5) == []


async def test_release_puts_an_unwritten_reply_straight_back(broker: Broker) -> None:
    sent = await broker.send("alpha", "beta", "lost reply")
    delivered = await broker.deliver("beta", limit=1)
    assert await broker.pending_count("beta") == 0
    assert await broker.release([m.id for m in delivered]) == 1
    assert await broker.pending_count("beta") == 1
    [back] = await broker.deliver("beta", limit=1)
    assert back.id == sent.id and not back.redelivered  # the agent never saw it


async def test_release_never_undoes_an_ack(broker: Broker) -> None:
    await broker.send("alpha", "beta", "x")
    delivered = await broker.deliver("beta", limit=1)
    await broker.ack("beta")
    assert await broker.release([m.id for m in delivered]) == 0
    assert await broker.pending_count("beta") == 0


async def test_broadcast_reaches_every_agent_but_the_sender(broker: Broker) -> None:
    sent = await broker.broadcast("alpha", "all hands")
    assert [m.recipient for m in sent] == ["beta"]
    sent = await broker.broadcast("operator", "all hands")
    assert [m.recipient for m in sent] == ["alpha", "beta"]


async def test_vacuum_drops_only_old_acked_messages(broker: Broker, clock: Clock, db: Database) -> None:
    await broker.send("alpha", "beta", "old acked")
    await broker.deliver("beta", limit=1)
    await broker.ack("beta")
    await broker.send("alpha", "beta", "old unacked")
    await broker.deliver("beta", limit=1)
    await broker.send("alpha", "beta", "old undelivered")
    clock.now += 31 * 86400
    assert await broker.vacuum(retention_seconds=30 * 86400) == 1
    bodies = await db.read(lambda c: [r[0] for r in c.execute("SELECT body FROM messages ORDER BY id")])
    assert bodies == ["old unacked", "old undelivered"]


# --------------------------------------------------------------------------------------- approvals


async def test_double_approve_is_refused(db: Database, clock: Clock) -> None:
    approvals = Approvals(db, clock=clock)
    resolutions = Resolutions(db, clock=clock)
    a = await approvals.add(
        ApprovalDraft(agent="alpha", kind=ApprovalKind.APPLY_COMMIT, commit_ref="abcdef1", description="tweak")
    )
    assert a.status is ApprovalStatus.PENDING
    done, notice = await resolutions.resolve_approval(
        a.id, ApprovalVerdict(status=ApprovalStatus.APPROVED, note="lgtm")
    )
    assert notice is not None and notice.recipient == "manager"
    assert (done.status, done.note, done.resolved_at) == (ApprovalStatus.APPROVED, "lgtm", clock.now)
    with pytest.raises(Conflict, match="already approved"):
        await resolutions.resolve_approval(a.id, ApprovalVerdict(status=ApprovalStatus.APPROVED))
    with pytest.raises(Conflict):
        await resolutions.resolve_approval(a.id, ApprovalVerdict(status=ApprovalStatus.DENIED, note="changed my mind"))
    assert (await approvals.get(a.id)).note == "lgtm"


async def test_approving_a_denied_one_changes_nothing(db: Database, clock: Clock) -> None:
    approvals = Approvals(db, clock=clock)
    resolutions = Resolutions(db, clock=clock)
    a = await approvals.add(ApprovalDraft(agent="alpha", kind=ApprovalKind.SPAWN, description="new worker"))
    await resolutions.resolve_approval(a.id, ApprovalVerdict(status=ApprovalStatus.DENIED, note="no"))
    with pytest.raises(Conflict, match="already denied"):
        await resolutions.resolve_approval(a.id, ApprovalVerdict(status=ApprovalStatus.APPROVED))
    assert (await approvals.get(a.id)).status is ApprovalStatus.DENIED
    with pytest.raises(NotFound):
        await resolutions.resolve_approval(999, ApprovalVerdict(status=ApprovalStatus.APPROVED))


async def test_failing_pending_approvals_of_a_destroyed_agent(db: Database, clock: Clock) -> None:
    approvals = Approvals(db, clock=clock)
    resolutions = Resolutions(db, clock=clock)
    a = await approvals.add(ApprovalDraft(agent="alpha", kind=ApprovalKind.APPLY_COMMIT, commit_ref="abcdef1"))
    b = await approvals.add(ApprovalDraft(agent="alpha", kind=ApprovalKind.APPLY_COMMIT, commit_ref="abcdef2"))
    await resolutions.resolve_approval(b.id, ApprovalVerdict(status=ApprovalStatus.DENIED))
    other = await approvals.add(ApprovalDraft(agent="beta", kind=ApprovalKind.APPLY_COMMIT, commit_ref="abcdef3"))
    failed = [a for a, _ in await resolutions.fail_pending_approvals("alpha", note="agent destroyed")]
    assert [f.id for f in failed] == [a.id]
    assert failed[0].note == "agent destroyed" and failed[0].status is ApprovalStatus.FAILED
    assert [p.id for p in await approvals.query(status=ApprovalStatus.PENDING)] == [other.id]


# --------------------------------------------------------------------------------------- questions


async def test_question_answer_is_compare_and_set(db: Database, clock: Clock) -> None:
    questions = OperatorQuestions(db, clock=clock)
    resolutions = Resolutions(db, clock=clock)
    q = await questions.ask(
        QuestionDraft(asker="alpha", question="ship it?", options=["yes", "no"], default_answer="no", ttl_seconds=60)
    )
    assert q.deadline_at == clock.now + 60
    answered, _ = await resolutions.answer_question(q.id, "yes", answerer="operator")
    assert (answered.answer, answered.answerer) == ("yes", "operator")
    with pytest.raises(Conflict, match="already answered"):
        await resolutions.answer_question(q.id, "no", answerer="operator")
    with pytest.raises(Conflict):
        await resolutions.cancel_question(q.id, by="operator")


async def test_cancel_answers_with_the_sentinel(db: Database, clock: Clock) -> None:
    questions = OperatorQuestions(db, clock=clock)
    q = await questions.ask(QuestionDraft(asker="alpha", question="still needed?"))
    cancelled, _ = await Resolutions(db, clock=clock).cancel_question(q.id, by="operator")
    assert (cancelled.answer, cancelled.cancelled) == ("[cancelled]", True)


async def test_deadline_passed_while_down_is_found_on_reopen(tmp_path: Path, clock: Clock) -> None:
    db = await Database.open(tmp_path / "hive.db")
    questions = OperatorQuestions(db, clock=clock)
    with_default = await questions.ask(
        QuestionDraft(asker="alpha", question="a?", default_answer="fine", ttl_seconds=10)
    )
    without = await questions.ask(QuestionDraft(asker="beta", question="b?", ttl_seconds=20, target="alpha"))
    later = await questions.ask(QuestionDraft(asker="beta", question="c?", ttl_seconds=3600))
    db.close()
    clock.now += 100  # the daemon was down across both deadlines
    db = await Database.open(tmp_path / "hive.db")
    try:
        questions = OperatorQuestions(db, clock=clock)
        assert await questions.next_deadline() == with_default.deadline_at
        expired = [q for q, _ in await Resolutions(db, clock=clock).expire_questions()]
        assert [(q.id, q.answer, q.answerer) for q in expired] == [
            (with_default.id, "fine", "ttl"),
            (without.id, "[expired]", "ttl"),
        ]
        assert [q.id for q in await questions.list_open()] == [later.id]
        assert await Resolutions(db, clock=clock).expire_questions() == []
    finally:
        db.close()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"question": "  "}, "empty"),
        ({"question": "q", "ttl_seconds": 0}, "positive"),
        ({"question": "q", "multi": True}, "options"),
    ],
)
async def test_bad_questions_are_refused(db: Database, clock: Clock, kwargs: dict[str, object], fragment: str) -> None:
    questions = OperatorQuestions(db, clock=clock)
    with pytest.raises(InvalidRequest, match=fragment):
        await questions.ask(QuestionDraft(asker="alpha", **kwargs))  # type: ignore[arg-type]


async def test_operator_questions_exclude_peer_questions(db: Database, clock: Clock) -> None:
    questions = OperatorQuestions(db, clock=clock)
    mine = await questions.ask(QuestionDraft(asker="alpha", question="operator?"))
    await questions.ask(QuestionDraft(asker="alpha", question="beta?", target="beta"))
    assert [q.id for q in await questions.list_open(operator_only=True)] == [mine.id]
    assert len(await questions.list_open()) == 2


async def test_a_delivery_stops_at_its_byte_budget_but_always_hands_out_one(broker: Broker) -> None:
    for size in (40, 40, 40, 500):
        await broker.send("a", "beta", "x" * size)
    assert [len(m.body) for m in await broker.deliver("beta", limit=32, max_bytes=100)] == [40, 40]
    assert [len(m.body) for m in await broker.deliver("beta", limit=32, max_bytes=100)] == [40]
    assert [len(m.body) for m in await broker.deliver("beta", limit=32, max_bytes=100)] == [500]  # alone, over
    assert [len(m.body) for m in await broker.recent(recipient="beta", limit=10, max_bytes=560)] == [40, 500]
