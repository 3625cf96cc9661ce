"""The harness stores on a real sqlite file: transcript caps and age, permission CAS, reminders once, usage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from hive_trio.errors import Conflict, InvalidRequest, NotFound
from hive_trio.records.harness import PermissionDecision, TranscriptKind
from hive_trio.store import permissions, reminders, transcripts, usage
from hive_trio.store.database import SCHEMA_VERSION, connect, migrate

DAY = 86400.0
NOON = 1_800_000_000.0 - (1_800_000_000.0 % DAY) + DAY / 2  # 12:00 UTC of some day


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    c = connect(tmp_path / "hive.db")
    migrate(c)
    c.execute("INSERT INTO agents (name, created_at) VALUES ('alpha', 0), ('beta', 0)")
    yield c
    c.close()


def test_the_migration_is_forward_only_and_versioned(conn: apsw.Connection) -> None:
    assert int(conn.pragma("user_version")) == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"transcript", "permissions", "permission_rules", "reminders", "usage_daily", "budgets"} <= tables


def test_transcript_keeps_the_newest_rows_per_agent_and_ages_out(conn: apsw.Connection) -> None:
    for i in range(10):
        transcripts.append_tx(
            conn, agent="alpha", turn_id="t", kind=TranscriptKind.TEXT, now=float(i), max_rows=4, text=str(i)
        )
    transcripts.append_tx(conn, agent="beta", turn_id="b", kind=TranscriptKind.TEXT, now=0.0, max_rows=4)
    assert [e.text for e in transcripts.list_tx(conn, agent="alpha", limit=100)] == ["6", "7", "8", "9"]
    assert transcripts.vacuum_tx(conn, older_than=8.0) == 3  # alpha's 6 and 7, beta's only row
    assert [e.text for e in transcripts.list_tx(conn, agent="alpha", limit=100)] == ["8", "9"]


def test_cap_text_cuts_on_a_character_boundary_and_says_so() -> None:
    assert transcripts.cap_text("short", 10) == "short"
    cut = transcripts.cap_text("ü" * 10, 5)
    assert cut is not None and cut.startswith("üü") and "20 bytes in all" in cut
    assert transcripts.cap_json({"a": [1, 2]}, 100) == '{"a":[1,2]}'
    assert transcripts.cap_json(None, 100) is None


def test_a_permission_is_decided_once(conn: apsw.Connection) -> None:
    p = permissions.request_tx(conn, agent="alpha", tool="Bash", input_json="{}", now=10.0, ttl_seconds=30)
    assert p.is_open and p.deadline_at == 40.0
    decided = permissions.decide_tx(
        conn, request_id=p.id, decision=PermissionDecision.DENY, decided_by="operator", now=11.0
    )
    assert decided.decision is PermissionDecision.DENY
    with pytest.raises(Conflict, match="already decided: deny by operator"):
        permissions.decide_tx(conn, request_id=p.id, decision=PermissionDecision.ALLOW, decided_by="operator", now=12.0)
    with pytest.raises(NotFound):
        permissions.decide_tx(conn, request_id=999, decision=PermissionDecision.ALLOW, decided_by="operator", now=12.0)


def test_expiry_denies_only_what_is_due_and_rules_answer_at_once(conn: apsw.Connection) -> None:
    early = permissions.request_tx(conn, agent="alpha", tool="Bash", input_json="{}", now=0.0, ttl_seconds=10)
    late = permissions.request_tx(conn, agent="alpha", tool="Edit", input_json="{}", now=0.0, ttl_seconds=100)
    assert permissions.next_deadline(conn) == 10.0
    assert [p.id for p in permissions.expire_tx(conn, now=50.0)] == [early.id]
    assert [p.id for p in permissions.list_open_tx(conn)] == [late.id]
    permissions.decide_tx(
        conn, request_id=late.id, decision=PermissionDecision.ALLOW, decided_by="operator", now=51.0, always=True
    )
    ruled = permissions.request_tx(conn, agent="alpha", tool="Edit", input_json="{}", now=60.0, ttl_seconds=100)
    assert (ruled.decision, ruled.decided_by) == (PermissionDecision.ALLOW, "rule")
    other = permissions.request_tx(conn, agent="beta", tool="Edit", input_json="{}", now=60.0, ttl_seconds=100)
    assert other.is_open
    permissions.forget_agent_tx(conn, agent="alpha")
    assert permissions.rules_tx(conn, agent="alpha") == []


def test_a_reminder_is_delivered_exactly_once(conn: apsw.Connection) -> None:
    r = reminders.add_tx(conn, agent="alpha", body="hi", due_at=100.0, now=0.0, max_pending=5, max_body_bytes=1000)
    assert reminders.next_due(conn) == 100.0
    assert reminders.deliver_due_tx(conn, now=99.0, render=lambda x: x.body) == []
    [(done, message)] = reminders.deliver_due_tx(conn, now=100.0, render=lambda x: f"#{x.id}: {x.body}")
    assert done.id == r.id and message is not None and message.body == f"#{r.id}: hi" and message.sender == "system"
    assert reminders.deliver_due_tx(conn, now=200.0, render=lambda x: x.body) == []
    assert reminders.pending_counts(conn) == {}
    with pytest.raises(InvalidRequest, match="empty"):
        reminders.add_tx(conn, agent="alpha", body=" ", due_at=1.0, now=0.0, max_pending=5, max_body_bytes=1000)


def test_a_reminder_for_a_destroyed_agent_goes_nowhere(conn: apsw.Connection) -> None:
    reminders.add_tx(conn, agent="alpha", body="hi", due_at=1.0, now=0.0, max_pending=5, max_body_bytes=1000)
    conn.execute("DELETE FROM agents WHERE name = 'alpha'")
    [(done, message)] = reminders.deliver_due_tx(conn, now=5.0, render=lambda x: x.body)
    assert message is None and done.delivered_at == 5.0


def test_usage_has_today_and_total_and_the_budget_notice_is_claimed_once_a_day(conn: apsw.Connection) -> None:
    usage.record_turn_tx(conn, agent="alpha", now=NOON - DAY, tokens=50, cost_usd=0.5)
    usage.record_turn_tx(conn, agent="alpha", now=NOON, tokens=10, cost_usd=0.1)
    usage.record_turn_tx(conn, agent="alpha", now=NOON, tokens=5, cost_usd=0.0)
    u = usage.usage_tx(conn, ["alpha", "beta"], now=NOON, default_tokens=None, default_usd=None)
    assert (u["alpha"].today_tokens, u["alpha"].total_tokens, u["alpha"].turns) == (15, 65, 3)
    assert u["beta"].total_tokens == 0 and not u["alpha"].budget_exceeded
    usage.set_budget_tx(conn, agent="alpha", daily_tokens=15, daily_usd=None)
    u = usage.usage_tx(conn, None, now=NOON, default_tokens=None, default_usd=None)
    assert u["alpha"].budget_exceeded
    assert (
        usage.usage_tx(conn, None, now=NOON + DAY, default_tokens=None, default_usd=None)["alpha"].budget_exceeded
        is False
    )
    assert usage.claim_budget_notice_tx(conn, agent="alpha", now=NOON) is True
    assert usage.claim_budget_notice_tx(conn, agent="alpha", now=NOON + 60) is False
    assert usage.claim_budget_notice_tx(conn, agent="alpha", now=NOON + DAY) is True
    assert usage.next_utc_midnight(NOON) == NOON + DAY / 2
