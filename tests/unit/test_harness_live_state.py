"""A dashboard client's view of permission requests and turns: applied idempotently, rendered for `watch`."""

from __future__ import annotations

from hive_trio.clients.live_state import LiveState
from hive_trio.clients.watch import render_event, render_snapshot
from hive_trio.records import Snapshot
from hive_trio.records.harness import (
    PermissionAddedEvent,
    PermissionDecision,
    PermissionRequest,
    PermissionResolvedEvent,
    TurnEventEvent,
    TurnEventKind,
    TurnFinishedEvent,
    TurnOutcome,
    TurnStartedEvent,
)

ADDED = PermissionAddedEvent(
    id=4, agent="alpha", tool="Bash", input_json='{"command":"ls"}', requested_at=100.0, deadline_at=400.0, seq=3
)
RESOLVED = PermissionResolvedEvent(
    id=4, agent="alpha", tool="Bash", decision=PermissionDecision.ALLOW, decided_by="operator", always=True,
    decided_at=150.0, seq=4,
)  # fmt: skip


def test_permission_events_apply_by_id_and_tolerate_the_snapshot() -> None:
    state = LiveState()
    open_row = PermissionRequest(
        id=4, agent="alpha", tool="Bash", input_json='{"command":"ls"}', requested_at=100.0, deadline_at=400.0
    )
    state.load(Snapshot(seq=2, epoch="e", agents=[], approvals=[], questions=[], messages=[], permissions=[open_row]))
    assert list(state.permissions) == [4]
    state.apply(ADDED)  # already shown by the snapshot: no change
    assert list(state.permissions) == [4]
    assert any("permission #4 pending" in line for line in render_snapshot(state))
    state.apply(RESOLVED)
    state.apply(RESOLVED)
    assert state.permissions == {}


def test_watch_renders_turns_and_permissions() -> None:
    assert render_event(ADDED, now=100.0) == (
        'permission #4: alpha asks to use Bash {"command":"ls"} (denied in 300s unless allowed)'
    )
    assert render_event(RESOLVED) == "permission #4: allow (always) by operator"
    assert render_event(TurnStartedEvent(agent="alpha", turn_id="t1", message_ids=[], at=1.0)) == (
        "alpha: turn t1 started"
    )
    event = TurnEventEvent(
        agent="alpha", turn_id="t1", event_kind=TurnEventKind.TOOL_USE, text=None, tool="Bash", at=1.0
    )
    assert render_event(event) == "alpha Bash"
    finished = TurnFinishedEvent(
        agent="alpha",
        turn_id="t1",
        outcome=TurnOutcome.AUTH_FAILED,
        error="401",
        model=None,
        input_tokens=0,
        output_tokens=0,
        cache_read_tokens=0,
        cache_write_tokens=0,
        cost_usd=None,
        at=2.0,
    )
    assert render_event(finished) == "alpha: turn t1 auth_failed (401)"
