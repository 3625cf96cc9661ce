"""Questions with deadlines, under `autojump_clock`: the watchdog, peer questions, who may answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from lifecycle_support import drain

from hive_trio.core.coordinator import Coordinator, open_coordinator
from hive_trio.core.event_hub import Subscription
from hive_trio.errors import Conflict
from hive_trio.lifecycle.bare import BareLifecycle
from hive_trio.records import (
    EXPIRED_ANSWER,
    SYSTEM_SENDER,
    TTL_ANSWERER,
    QuestionAddedEvent,
    QuestionResolvedEvent,
    SentEvent,
)
from hive_trio.rules.config import Config


async def system_events(coord: Coordinator, name: str) -> list[dict[str, object]]:
    return [
        json.loads(m.body)
        for m in await coord.recent_messages(name, limit=100)
        if m.sender == SYSTEM_SENDER and m.body.startswith("{")
    ]


async def next_event(events: Subscription, wanted: Callable[[object], bool]) -> object:
    """Wait for the hub event the watchdog's work produces (autojump moves the clock meanwhile)."""
    async for item in events:
        if wanted(item):
            return item
    raise AssertionError("the subscription ended")


def resolved(qid: int) -> Callable[[object], bool]:
    return lambda e: isinstance(e, QuestionResolvedEvent) and e.id == qid


@asynccontextmanager
async def watchdog(coord: Coordinator) -> AsyncIterator[None]:
    """Run the watchdog only while we wait on it: once it is cancelled, reads cannot race a jump of the clock."""
    async with trio.open_nursery() as nursery:
        await nursery.start(coord.serve_question_watchdog)
        yield
        nursery.cancel_scope.cancel()


async def test_a_deadline_gives_the_default_answer_to_the_asker(
    coordinator: Coordinator, autojump_clock: trio.testing.MockClock
) -> None:
    coord = coordinator
    await coord.record_spawn("alpha")
    with coord.subscribe() as events:
        async with watchdog(coord):
            q = await coord.ask("alpha", "deploy now?", options=["yes", "no"], ttl_seconds=30, default_answer="no")
            assert isinstance(await next_event(events, lambda e: isinstance(e, QuestionAddedEvent)), QuestionAddedEvent)
            event = await next_event(events, resolved(q.id))
    assert isinstance(event, QuestionResolvedEvent)
    assert event.answer == "no" and event.answerer == TTL_ANSWERER
    assert q.deadline_at == q.asked_at + 30
    # Resolved at its deadline, not before (SQL `deadline_at <= now`) and not noticeably after.
    assert q.deadline_at <= event.answered_at < q.deadline_at + 1
    stored = await coord.get_question(q.id)
    assert stored.answer == "no" and stored.answerer == TTL_ANSWERER
    assert {
        "event": "question_answered",
        "id": q.id,
        "question": "deploy now?",
        "answer": "no",
        "answerer": TTL_ANSWERER,
    } in await system_events(coord, "alpha")


async def test_without_a_default_the_answer_is_the_expired_sentinel(
    coordinator: Coordinator, autojump_clock: trio.testing.MockClock
) -> None:
    coord = coordinator
    await coord.record_spawn("alpha")
    with coord.subscribe() as events:
        async with watchdog(coord):
            q = await coord.ask("alpha", "anyone there?", ttl_seconds=5)
            event = await next_event(events, resolved(q.id))
    assert isinstance(event, QuestionResolvedEvent)
    assert event.answer == EXPIRED_ANSWER and event.answerer == TTL_ANSWERER


async def test_a_sooner_question_wakes_the_watchdog(
    coordinator: Coordinator, autojump_clock: trio.testing.MockClock
) -> None:
    coord = coordinator
    await coord.record_spawn("alpha")
    with coord.subscribe() as events:
        async with watchdog(coord):
            late = await coord.ask("alpha", "later?", ttl_seconds=1000)
            soon = await coord.ask("alpha", "sooner?", ttl_seconds=10, default_answer="ok")
            first = await next_event(events, lambda e: isinstance(e, QuestionResolvedEvent))
    assert isinstance(first, QuestionResolvedEvent)
    assert first.id == soon.id and first.answer == "ok"
    assert soon.deadline_at is not None and first.answered_at < soon.deadline_at + 1
    assert (await coord.get_question(late.id)).is_open


async def test_deadlines_that_passed_while_down_are_resolved_at_start(config: Config) -> None:
    clock_value = [1_800_000_000.0]
    async with open_coordinator(config, lifecycle=BareLifecycle, clock=lambda: clock_value[0]) as coord:
        await coord.record_spawn("alpha")
        q = await coord.ask("alpha", "still there?", ttl_seconds=10, default_answer="assumed yes")
        operator_q = await coord.ask("alpha", "no deadline", ttl_seconds=None)
    clock_value[0] += 3600  # the daemon was down for an hour
    async with open_coordinator(config, lifecycle=BareLifecycle, clock=lambda: clock_value[0]) as coord:
        with coord.subscribe() as events:
            await coord.root_nursery.start(coord.serve_question_watchdog)
            # Resolved before the watchdog reports started, i.e. before anything else can ask.
            resolved = await coord.get_question(q.id)
            seen = drain(events)
        assert resolved.answer == "assumed yes" and resolved.answerer == TTL_ANSWERER
        assert (await coord.get_question(operator_q.id)).is_open
        assert any(isinstance(e, QuestionResolvedEvent) and e.id == q.id for e in seen)
        answered = [e for e in await system_events(coord, "alpha") if e["event"] == "question_answered"]
        assert answered and answered[0]["answer"] == "assumed yes"


async def test_peer_questions_reach_their_target_and_only_it_or_the_operator_answers(
    coordinator: Coordinator, autojump_clock: trio.testing.MockClock
) -> None:
    coord = coordinator
    for name in ("alpha", "beta", "gamma"):
        await coord.record_spawn(name)
    with coord.subscribe() as events:
        q = await coord.ask("alpha", "which branch?", options=["main", "dev"], multi=True, target="beta")
        assert not any(isinstance(e, QuestionAddedEvent) for e in drain(events)), (
            "peer questions stay off the dashboard"
        )
    asked = [e for e in await system_events(coord, "beta") if e["event"] == "question_asked"]
    assert asked == [
        {
            "event": "question_asked",
            "id": q.id,
            "asker": "alpha",
            "question": "which branch?",
            "options": ["main", "dev"],
            "multi": True,
            "deadline_at": None,
        }
    ]
    for intruder in ("gamma", "alpha", "manager"):
        with pytest.raises(Conflict, match="was asked of 'beta'"):
            await coord.answer_question(q.id, "main", answerer=intruder)
    answered = await coord.answer_question(q.id, ["main", "dev"], answerer="beta")
    assert answered.answer == "main, dev" and answered.answerer == "beta"
    with pytest.raises(Conflict, match="already answered"):
        await coord.answer_question(q.id, "dev", answerer="beta")
    got = [e for e in await system_events(coord, "alpha") if e["event"] == "question_answered"]
    assert got[-1]["answer"] == "main, dev" and got[-1]["answerer"] == "beta"

    # The operator may override a peer question; an agent may never answer the operator's.
    q2 = await coord.ask("alpha", "ship it?", target="beta")
    overridden = await coord.answer_question(q2.id, "yes", answerer="operator")
    assert overridden.answerer == "operator"
    q3 = await coord.ask("alpha", "for the operator")
    with pytest.raises(Conflict, match="the operator"):
        await coord.answer_question(q3.id, "sure", answerer="beta")


async def test_a_peer_question_past_its_deadline_answers_the_asker(
    coordinator: Coordinator, autojump_clock: trio.testing.MockClock
) -> None:
    coord = coordinator
    await coord.record_spawn("alpha")
    await coord.record_spawn("beta")
    with coord.subscribe() as events:
        async with watchdog(coord):
            q = await coord.ask("alpha", "review?", target="beta", ttl_seconds=60, default_answer="skip review")
            # Peer questions never reach the dashboard; the asker's answer arrives as a system message.
            sent = await next_event(
                events, lambda e: isinstance(e, SentEvent) and e.recipient == "alpha" and "question_answered" in e.body
            )
        assert not any(isinstance(e, QuestionResolvedEvent | QuestionAddedEvent) for e in drain(events))
    assert isinstance(sent, SentEvent) and sent.sender == SYSTEM_SENDER
    assert json.loads(sent.body)["answer"] == "skip review"
    stored = await coord.get_question(q.id)
    assert stored.answer == "skip review" and stored.answerer == TTL_ANSWERER
