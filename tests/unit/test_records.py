from __future__ import annotations

import json
from typing import Any

import pytest

from hive_trio import records as r
from hive_trio.records import RecordError
from hive_trio.records import harness as h

STATUS = r.AgentStatus(
    name="alpha",
    running=True,
    failed=False,
    needs_update=False,
    needs_login=False,
    paused=False,
    parent=None,
    deployed_sha="0123456789ab",
    active_model=None,
    status_text="working",
    status_set_at="2026-11-24T12:00:00Z",
    url=None,
    transient=r.TransientKind.REBUILDING,
    pending_messages=3,
)

HELPER_EVENTS: list[Any] = [
    r.HelperApprovalResolved(id=1, agent="alpha", status=r.ApprovalStatus.DENIED, note="no", sha="abc", tag="t"),
    r.HelperSpawned(agent="alpha"),
    r.HelperRebuilt(agent="alpha", sha="abc", tag="deployed/1"),
    r.HelperKilled(agent="alpha"),
    r.HelperDestroyed(agent="alpha"),
    r.HelperContainerCrash(agent="alpha", note="exit 1"),
    r.HelperNeedsUpdate(agent="alpha"),
    r.HelperQuestionAsked(id=2, asker="alpha", question="q?", options=["a"], multi=False, deadline_at=5.0),
    r.HelperQuestionAnswered(id=2, question="q?", answer="a", answerer="operator"),
    h.HelperNeedsLogin(agent="alpha"),
    h.HelperLoggedIn(agent="alpha"),
    h.HelperTurnFailed(agent="alpha", note="alpha's turn failed: boom"),
    h.HelperBudgetExceeded(agent="alpha"),
    r.HelperUndeliverable(id=3, to="bob@lab", reason="lab: no agent 'bob' on hive 'lab'"),
]

DASHBOARD_EVENTS: list[Any] = [
    r.SentEvent(sender="alpha", recipient="beta", body="hi", at=1.5, seq=1),
    r.DeliveredEvent(sender="alpha", recipient="beta", body="hi", at=2.0, seq=2),
    r.ApprovalAddedEvent(
        id=1, agent="alpha", approval_kind=r.ApprovalKind.APPLY_COMMIT, sha_short="abc", diff="+x", description="d"
    ),
    r.ApprovalResolvedEvent(
        id=1,
        agent="alpha",
        approval_kind=r.ApprovalKind.SPAWN,
        sha_short=None,
        status=r.ApprovalStatus.APPROVED,
        resolved_at=3.0,
        note=None,
        description=None,
        seq=4,
    ),
    r.QuestionAddedEvent(
        id=1, asker="alpha", question="q", options=["a", "b"], multi=True, asked_at=1.0, deadline_at=None, seq=5
    ),
    r.QuestionResolvedEvent(id=1, answer="a, b", answerer="operator", answered_at=2.0, cancelled=False, seq=6),
    r.TransientSetEvent(name="alpha", transient_kind=r.TransientKind.SPAWNING, since_unix=1.0, seq=7),
    r.TransientClearedEvent(name="alpha", seq=8),
    r.ContainerStateChangedEvent(row=STATUS, seq=9),
    r.ContainerRemovedEvent(name="alpha", seq=10),
    h.TurnStartedEvent(agent="alpha", turn_id="t1", message_ids=[1, 2], at=1.0, seq=11),
    h.TurnEventEvent(
        agent="alpha", turn_id="t1", event_kind=h.TurnEventKind.TOOL_USE, text=None, tool="Bash", at=1.5, seq=12
    ),
    h.TurnFinishedEvent(
        agent="alpha",
        turn_id="t1",
        outcome=h.TurnOutcome.OK,
        error=None,
        model="claude-x",
        input_tokens=10,
        output_tokens=5,
        cache_read_tokens=0,
        cache_write_tokens=0,
        cost_usd=0.01,
        at=2.0,
        seq=13,
    ),
    h.PermissionAddedEvent(
        id=1, agent="alpha", tool="Bash", input_json='{"command":"ls"}', requested_at=1.0, deadline_at=301.0, seq=14
    ),
    h.PermissionResolvedEvent(
        id=1,
        agent="alpha",
        tool="Bash",
        decision=h.PermissionDecision.ALLOW,
        decided_by="operator",
        always=True,
        decided_at=2.0,
        seq=15,
    ),
]


def test_every_variant_is_covered() -> None:
    assert {type(e) for e in HELPER_EVENTS} == set(r.HELPER_EVENT_TYPES)
    assert {type(e) for e in DASHBOARD_EVENTS} == set(r.DASHBOARD_EVENT_TYPES)


@pytest.mark.parametrize("event", HELPER_EVENTS, ids=lambda e: e.tag_value)
def test_helper_event_round_trips_through_json(event: Any) -> None:
    text = r.to_json(event, r.HelperEvent)
    data = json.loads(text)
    assert data["event"] == event.tag_value
    assert r.from_json(text, r.HelperEvent) == event


@pytest.mark.parametrize("event", DASHBOARD_EVENTS, ids=lambda e: e.tag_value)
def test_dashboard_event_round_trips_through_json(event: Any) -> None:
    text = r.to_json(event, r.DashboardEvent)
    data = json.loads(text)
    assert data["kind"] == event.tag_value
    assert data["seq"] == event.seq
    assert r.from_json(text, r.DashboardEvent) == event


def test_sent_uses_hyperhive_field_names() -> None:
    data = r.unstructure_event(r.SentEvent(sender="a", recipient="b", body="x", at=1.0, seq=3))
    assert data == {"kind": "sent", "from": "a", "to": "b", "body": "x", "at": 1.0, "seq": 3}


def test_records_round_trip() -> None:
    approval = r.Approval(
        id=1,
        agent="alpha",
        kind=r.ApprovalKind.APPLY_COMMIT,
        status=r.ApprovalStatus.PENDING,
        requested_at=1.0,
        commit_ref="abcdef0",
        diff="+a",
    )
    question = r.Question(id=1, asker="alpha", question="q", asked_at=1.0, options=["x"], deadline_at=9.0)
    message = r.Message(id=1, sender="a", recipient="b", body="x", sent_at=1.0, redelivered=True)
    for record in (approval, question, message, STATUS, r.Delivery(1, "a", "x", 1.0, False)):
        assert r.from_json(r.to_json(record), type(record)) == record
    assert json.loads(r.to_json(message))["from"] == "a"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ('{"kind": "nope", "seq": 1}', "nope"),
        ('{"seq": 1}', "kind"),
        ('{"kind": "sent", "from": "a", "to": "b", "body": 5, "at": 1, "seq": 1}', "string"),
        ('{"kind": "sent", "from": "a", "to": "b", "at": 1, "seq": 1}', "body"),
        ('{"kind": "transient_set", "name": "a", "transient_kind": "dancing", "since_unix": 1}', "dancing"),
        ('{"kind": "sent", "from": "a", "to": "b", "body": "x", "at": true, "seq": 1}', "number"),
        ("[1, 2]", ""),
        ("not json", "JSON"),
        (b"\xff\xfe", "JSON"),
    ],
)
def test_malformed_input_raises_one_clear_error(payload: str | bytes, fragment: str) -> None:
    with pytest.raises(RecordError) as info:
        r.from_json(payload, r.DashboardEvent)
    assert fragment in str(info.value)


def test_strict_types_never_coerce() -> None:
    with pytest.raises(RecordError, match="integer"):
        r.structure({"id": "1", "from": "a", "body": "b", "sent_at": 1.0, "redelivered": False}, r.Delivery)
    with pytest.raises(RecordError, match="boolean"):
        r.structure({"id": True, "from": "a", "body": "b", "sent_at": 1.0, "redelivered": False}, r.Delivery)
    with pytest.raises(RecordError, match="64 bits"):
        r.structure({"id": 2**63, "from": "a", "body": "b", "sent_at": 1.0, "redelivered": False}, r.Delivery)
    big = {"id": 2**63 - 1, "from": "a", "body": "b", "sent_at": 1.0, "redelivered": False}
    assert r.structure(big, r.Delivery).id == 2**63 - 1
    with pytest.raises(RecordError, match="finite"):
        r.structure({"id": 1, "from": "a", "body": "b", "sent_at": float("nan"), "redelivered": False}, r.Delivery)
    with pytest.raises(RecordError, match="required field missing"):
        r.structure({"id": 1, "body": "b", "sent_at": 1.0, "redelivered": False}, r.Delivery)


def test_text_that_is_not_unicode_is_refused_by_name() -> None:
    # JSON lets a peer write "\ud800"; such a string can be neither stored in sqlite nor sent on as UTF-8.
    with pytest.raises(RecordError, match=r"not valid Unicode \(a lone surrogate at offset 1\) @ \$.body"):
        r.structure({"id": 1, "from": "a", "body": "x\ud800", "sent_at": 1.0, "redelivered": False}, r.Delivery)
    with pytest.raises(RecordError, match=r"lone surrogate .* @ \$.answer"):
        r.structure({"id": 1, "answer": ["ok", "\udfff"]}, r.HostAnswer)


def test_dumps_is_json_dumps_byte_for_byte() -> None:
    """`dumps` keeps one encoder; its output must stay exactly `json.dumps`'s with the same options."""
    samples: list[object] = [
        {"id": 5, "ids": [5]},
        {"body": 'hé "q" \n ☃ \ud800', "n": None, "f": 1.5, "big": 10**30, "t": True},
        [],
        "text",
        {"nested": [{"a": [1, {"b": float("inf")}]}]},
    ]
    for data in samples:
        assert r.dumps(data) == json.dumps(data, ensure_ascii=False, separators=(",", ":"))
