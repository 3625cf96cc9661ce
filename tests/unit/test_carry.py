"""`records.carry.carried`: a record restated from another's same-named fields."""

from __future__ import annotations

import attrs
import pytest

from hive_trio.records import PermissionDecision, PermissionRequest, Question, QuestionAddedEvent
from hive_trio.records.carry import carried
from hive_trio.records.harness import PermissionAddedEvent, PermissionResolvedEvent


def _request(decision: PermissionDecision | None = None, decided_by: str | None = None) -> PermissionRequest:
    return PermissionRequest(
        id=7,
        agent="alice",
        tool="Bash",
        input_json='{"cmd":"ls"}',
        requested_at=1.0,
        deadline_at=61.0,
        decision=decision,
        decided_by=decided_by,
    )


def test_copies_same_named_fields_and_keeps_defaults_for_the_rest() -> None:
    event = carried(PermissionAddedEvent, _request())
    assert event == PermissionAddedEvent(
        id=7, agent="alice", tool="Bash", input_json='{"cmd":"ls"}', requested_at=1.0, deadline_at=61.0
    )
    assert event.seq == 0
    # And back: the row's decision fields keep their defaults.
    assert carried(PermissionRequest, event) == _request()


def test_named_fields_win_over_the_source() -> None:
    event = carried(PermissionAddedEvent, _request(), input_json="null")
    assert event.input_json == "null"
    decided = _request(PermissionDecision.DENY, "ttl")
    assert carried(PermissionResolvedEvent, decided, decided_at=5.0).decided_at == 5.0


def test_same_as_listing_the_fields() -> None:
    q = Question(id=3, asker="bob", question="ok?", asked_at=2.0, options=["y", "n"], deadline_at=9.0)
    assert QuestionAddedEvent.of(q) == QuestionAddedEvent(
        id=3, asker="bob", question="ok?", options=["y", "n"], multi=False, asked_at=2.0, deadline_at=9.0
    )


def test_a_required_field_the_source_lacks_is_a_type_error() -> None:
    @attrs.frozen
    class Needs:
        id: int
        missing: str

    with pytest.raises(TypeError, match="missing"):
        carried(Needs, _request())
