"""The dashboard's sans-IO pieces: action parsing, frames, resume, access checks, live state, token."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hive_trio.clients.live_state import LiveState
from hive_trio.dashboard.protocol import (
    ActionError,
    ResumePoint,
    SeqFilter,
    encode_action,
    encode_event,
    encode_result,
    encode_resumed,
    encode_snapshot,
    host_allowed,
    is_loopback_host,
    origin_allowed,
    parse_action,
    parse_frame,
    parse_resume,
    stream_url,
    token_matches,
)
from hive_trio.dashboard.token import dashboard_url, ensure_token, http_url, read_token
from hive_trio.errors import HiveError
from hive_trio.records import (
    DASHBOARD_OPS,
    AgentStatus,
    AnswerAction,
    Approval,
    ApprovalAddedEvent,
    ApprovalKind,
    ApprovalResolvedEvent,
    ApprovalStatus,
    ApproveAction,
    ContainerRemovedEvent,
    ContainerStateChangedEvent,
    DeliveredEvent,
    EventFrame,
    LogTailAction,
    Message,
    Question,
    QuestionAddedEvent,
    QuestionResolvedEvent,
    RecordError,
    ResultFrame,
    ResumedFrame,
    SendAction,
    SentEvent,
    SetPausedAction,
    Snapshot,
    StopAction,
    TransientClearedEvent,
    TransientKind,
    TransientSetEvent,
)
from hive_trio.records.harness import (
    AllowPermissionAction,
    DenyPermissionAction,
    InterruptAction,
    RemindersAction,
    TranscriptAction,
)
from hive_trio.rules.config import Config


def _row(name: str, **changes: object) -> AgentStatus:
    base: dict[str, object] = dict(
        name=name,
        running=True,
        failed=False,
        needs_update=False,
        needs_login=False,
        paused=False,
        parent=None,
        deployed_sha=None,
        active_model=None,
        status_text=None,
        status_set_at=None,
        url=None,
    )
    base.update(changes)
    return AgentStatus(**base)  # type: ignore[arg-type]


def _snapshot(seq: int = 10) -> Snapshot:
    return Snapshot(
        seq=seq,
        epoch="run-1",
        agents=[_row("alpha"), _row("beta", running=False, transient=TransientKind.STARTING)],
        approvals=[
            Approval(
                id=3,
                agent="alpha",
                kind=ApprovalKind.APPLY_COMMIT,
                status=ApprovalStatus.PENDING,
                requested_at=1.0,
                fetched_sha="0123456789abcdef",
                diff="+x",
            )
        ],
        questions=[Question(id=4, asker="alpha", question="ok?", asked_at=2.0, options=["y", "n"])],
        messages=[Message(id=1, sender="alpha", recipient="operator", body="hi", sent_at=5.0)],
        tombstones=["old"],
    )


# ------------------------------------------------------------------------------------- actions


def test_every_op_parses_with_its_fields() -> None:
    assert parse_action('{"op":"approve","id":3,"note":"ok","req":1}') == ApproveAction(id=3, note="ok", req=1)
    assert parse_action('{"op":"answer","id":4,"answer":["a","b"],"req":"x"}') == AnswerAction(
        id=4, answer=["a", "b"], req="x"
    )
    assert parse_action('{"op":"send","to":"alpha","body":"hi"}') == SendAction(to="alpha", body="hi")
    assert parse_action('{"op":"stop","name":"alpha","graceful":false}') == StopAction(name="alpha", graceful=False)
    assert set(DASHBOARD_OPS) == {
        "approve",
        "deny",
        "answer",
        "cancel_question",
        "send",
        "start",
        "stop",
        "restart",
        "rebuild",
        "destroy",
        "spawn",
        "cancel_transient",
        "allow_permission",
        "deny_permission",
        "interrupt",
        "set_paused",
        "log_tail",
        "transcript",
        "reminders",
    }
    assert parse_action('{"op":"allow_permission","id":3,"always":true,"req":2}') == AllowPermissionAction(
        id=3, always=True, req=2
    )
    assert parse_action('{"op":"deny_permission","id":3}') == DenyPermissionAction(id=3)
    assert parse_action('{"op":"interrupt","name":"alpha"}') == InterruptAction(name="alpha")
    assert parse_action('{"op":"set_paused","name":"alpha","paused":true}') == SetPausedAction(
        name="alpha", paused=True
    )
    assert parse_action('{"op":"log_tail","name":"manager","offset":5}') == LogTailAction(name="manager", offset=5)
    assert parse_action('{"op":"transcript","name":"alpha","since":4}') == TranscriptAction(name="alpha", since=4)
    assert parse_action('{"op":"reminders","name":"alpha","req":1}') == RemindersAction(name="alpha", req=1)


@pytest.mark.parametrize(
    ("frame", "message", "req"),
    [
        (b'{"op":"send"}', "text frames", None),
        ("", "not valid JSON", None),
        ('"approve"', "JSON object, got str", None),
        ('{"op": 5, "req": 2}', "missing 'op'", 2),
        ('{"op":"approve","id":true,"req":3}', "expected int", 3),
        ('{"op":"answer","id":1,"answer":[1],"req":4}', "expected str | list[str] @ answer", 4),
        ('{"op":"approve","id":1,"req":[1]}', "'req' must be a number or a string", None),
        ('{"op":"approve","id":1,"req":true}', "'req' must be a number or a string", None),
        ('{"op":"nuke","req":"q"}', "unknown op 'nuke'; expected one of: approve, deny", "q"),
    ],
)
def test_bad_actions_say_why_and_keep_the_req(frame: str | bytes, message: str, req: object) -> None:
    with pytest.raises(ActionError) as caught:
        parse_action(frame)
    assert message in str(caught.value)
    assert caught.value.req == req


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_no_input_escapes_as_anything_but_an_action_error(frame: str | bytes) -> None:
    try:
        parse_action(frame)
    except ActionError:
        pass


def test_encode_action_is_parse_actions_inverse_and_validates_locally() -> None:
    text = encode_action("deny", 7, {"id": 2, "note": "no"})
    assert parse_action(text) == parse_action('{"op":"deny","id":2,"note":"no","req":7}')
    with pytest.raises(ActionError, match="unknown op"):
        encode_action("nope", 1, {})
    with pytest.raises(RecordError):
        encode_action("approve", 1, {"id": "three"})


# -------------------------------------------------------------------------------------- frames


def test_frames_round_trip_through_the_one_converter() -> None:
    snap = _snapshot()
    data = json.loads(encode_snapshot(snap))
    assert data["type"] == "snapshot" and data["seq"] == 10 and data["epoch"] == "run-1"
    assert data["messages"][0]["from"] == "alpha"
    assert parse_frame(encode_snapshot(snap)) == snap
    event = SentEvent(sender="a", recipient="b", body="x", at=1.0, seq=11)
    assert json.loads(encode_event(event)) == {
        "type": "event",
        "event": {"kind": "sent", "from": "a", "to": "b", "body": "x", "at": 1.0, "seq": 11},
    }
    assert parse_frame(encode_event(event)) == EventFrame(event=event)
    assert parse_frame(encode_resumed(5, "e")) == ResumedFrame(seq=5, epoch="e")
    assert parse_frame(encode_result("r", ok=False, error="no")) == ResultFrame(req="r", ok=False, error="no")
    assert parse_frame('{"type":"from_the_future","x":1}') is None
    with pytest.raises(RecordError):
        parse_frame("{}")


def test_seq_filter_drops_what_the_snapshot_already_covers() -> None:
    f = SeqFilter()
    early = EventFrame(event=TransientClearedEvent(name="a", seq=3))
    assert not f.accept(early)  # nothing is accepted before a snapshot
    assert f.accept(_snapshot(seq=10))
    assert not f.accept(EventFrame(event=TransientClearedEvent(name="a", seq=10)))
    assert f.accept(EventFrame(event=TransientClearedEvent(name="a", seq=11)))
    assert not f.accept(EventFrame(event=TransientClearedEvent(name="a", seq=11)))
    assert f.resume_point() == ResumePoint(since=11, epoch="run-1")
    assert f.accept(ResumedFrame(seq=40, epoch="run-2"))
    assert f.resume_point() == ResumePoint(since=40, epoch="run-2")


def test_resume_query_is_lenient_and_urls_carry_it() -> None:
    assert parse_resume({"since": "5", "epoch": "e"}) == ResumePoint(5, "e")
    for bad in ({"since": "5"}, {"epoch": "e"}, {"since": "x", "epoch": "e"}, {"since": "-1", "epoch": "e"}):
        assert parse_resume(bad) is None
    url = stream_url("http://127.0.0.1:7847/?token=t%2B1", token=None, resume=ResumePoint(9, "ep"))
    assert url == "ws://127.0.0.1:7847/stream?token=t%2B1&since=9&epoch=ep"
    assert stream_url("https://h:1/", token="z", resume=None) == "wss://h:1/stream?token=z"


# -------------------------------------------------------------------------------------- access


def test_token_compare() -> None:
    assert token_matches("secret-token", "secret-token")
    assert not token_matches("secret-token", "secret-tokeN")
    assert not token_matches("secret-token", None)
    assert not token_matches("secret-token", "")


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "127.0.0.1:7847", True),  # not a browser: the token decides
        ("http://127.0.0.1:7847", "127.0.0.1:7847", True),
        ("http://localhost:7847", "localhost:7847", True),
        ("http://127.0.0.1:7848", "127.0.0.1:7847", False),
        ("http://evil.example", "127.0.0.1:7847", False),
        ("null", "127.0.0.1:7847", False),
        ("file://", "127.0.0.1:7847", False),
        ("http://127.0.0.1:7847", None, False),
        ("http://[::1]:7847", "[::1]:7847", True),
        ("http://[::1]:7847", "::1:7847", True),  # trio-websocket's unbracketed Host
        ("http://[::1]:7848", "::1:7847", False),
        ("http://hive.example", "hive.example:80", True),
        ("http://127.0.0.1:notaport", "127.0.0.1:7847", False),
        # An Origin with a user part, or a path, is no browser's (issue 13).
        ("http://user@127.0.0.1:7847", "127.0.0.1:7847", False),
        ("http://evil.example@127.0.0.1:7847", "127.0.0.1:7847", False),
        ("http://127.0.0.1:7847/", "127.0.0.1:7847", False),
        ("http://127.0.0.1:7847?x", "127.0.0.1:7847", False),
    ],
)
def test_origin_must_be_the_dashboard_itself(origin: str | None, host: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, host) is allowed


def test_host_check_defeats_dns_rebinding_on_loopback() -> None:
    for host in ("127.0.0.1:7847", "localhost:1", "[::1]:7847", "::1:7847", "::1", "127.1.2.3"):
        assert host_allowed(host, public=False), host
    for host in ("evil.example:7847", "10.0.0.1:7847", None, ""):
        assert not host_allowed(host, public=False), host
    assert host_allowed("hive.example:7847", public=True)
    assert is_loopback_host("::1") and is_loopback_host("localhost") and not is_loopback_host("0.0.0.0")


# ---------------------------------------------------------------------------------- live state


def test_live_state_loads_a_snapshot() -> None:
    state = LiveState()
    state.load(_snapshot())
    assert set(state.agents) == {"alpha", "beta"}
    assert state.transients == {"beta": TransientKind.STARTING}
    assert state.approvals[3].sha_short == "0123456789ab"
    assert state.questions[4].options == ["y", "n"]
    assert [e.body for e in state.log] == ["hi"]
    assert state.tombstones == ["old"]


def test_events_the_snapshot_already_shows_change_nothing() -> None:
    state = LiveState()
    state.load(_snapshot())
    # The message in the snapshot raced its own `sent` event: logged once.
    state.apply(SentEvent(sender="alpha", recipient="operator", body="hi", at=5.0, seq=11))
    assert [e.body for e in state.log] == ["hi"]
    resolved = ApprovalResolvedEvent(
        id=3,
        agent="alpha",
        approval_kind=ApprovalKind.APPLY_COMMIT,
        sha_short=None,
        status=ApprovalStatus.APPROVED,
        resolved_at=6.0,
        note=None,
        description=None,
        seq=12,
    )
    state.apply(resolved)
    state.apply(resolved)
    assert state.approvals == {}
    answered = QuestionResolvedEvent(id=4, answer="y", answerer="operator", answered_at=7.0, cancelled=False, seq=13)
    state.apply(answered)
    state.apply(answered)
    assert state.questions == {}
    assert state.seq == 13


def test_live_state_follows_each_event_kind() -> None:
    state = LiveState()
    state.load(_snapshot())
    state.apply(
        ApprovalAddedEvent(
            id=9, agent="beta", approval_kind=ApprovalKind.SPAWN, sha_short=None, diff=None, description="new", seq=11
        )
    )
    state.apply(
        QuestionAddedEvent(
            id=8, asker="beta", question="?", options=[], multi=False, asked_at=1.0, deadline_at=None, seq=12
        )
    )
    state.apply(TransientSetEvent(name="alpha", transient_kind=TransientKind.RESTARTING, since_unix=1.0, seq=13))
    assert state.agents["alpha"].transient is TransientKind.RESTARTING
    # A row published before the spinner cleared must not bring it back, nor hide a live one.
    state.apply(ContainerStateChangedEvent(row=_row("alpha", running=False), seq=14))
    assert state.agents["alpha"].transient is TransientKind.RESTARTING and not state.agents["alpha"].running
    state.apply(TransientClearedEvent(name="alpha", seq=15))
    assert state.agents["alpha"].transient is None
    state.apply(SentEvent(sender="operator", recipient="beta", body="go", at=9.0, seq=16))
    state.apply(DeliveredEvent(sender="operator", recipient="beta", body="go", at=9.5, seq=17))
    assert state.log[-1].delivered
    state.apply(ContainerStateChangedEvent(row=_row("old"), seq=18))
    assert "old" not in state.tombstones and "old" in state.agents
    state.apply(ContainerRemovedEvent(name="beta", seq=19))
    assert set(state.agents) == {"alpha", "old"} and set(state.approvals) == {3, 9} and set(state.questions) == {4, 8}


# --------------------------------------------------------------------------------------- token


def test_token_file_is_created_private_and_reread(tmp_path: Path) -> None:
    path = tmp_path / "dashboard.token"
    token = ensure_token(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_token(path) == token == read_token(path)
    os.chmod(path, 0o644)
    assert read_token(path) == token
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.write_text("short\n")
    with pytest.raises(HiveError, match="too short"):
        read_token(path)
    with pytest.raises(HiveError, match="start the daemon once"):
        read_token(tmp_path / "missing")


def test_dashboard_url_prefers_the_running_daemons_address(config: Config) -> None:
    config.state_dir.mkdir(parents=True)
    config.runtime_dir.mkdir(parents=True)
    token = ensure_token(config.state_dir / "dashboard.token")
    assert dashboard_url(config) == f"http://127.0.0.1:7847/?token={token}"
    (config.runtime_dir / "dashboard.url").write_text("http://127.0.0.1:40001/\n")
    assert dashboard_url(config) == f"http://127.0.0.1:40001/?token={token}"
    assert http_url("0.0.0.0", 80) == "http://127.0.0.1:80/"
    assert http_url("::1", 80) == "http://[::1]:80/"


def test_live_state_matches_delivery_by_message_id_not_by_body() -> None:
    state = LiveState()
    state.load(_snapshot())
    # Two messages with the same words: the delivery of the second must tick the second.
    state.apply(SentEvent(sender="operator", recipient="beta", body="go", at=9.0, id=21, seq=11))
    state.apply(SentEvent(sender="operator", recipient="beta", body="go", at=9.0, id=22, seq=12))
    assert [e.id for e in state.log][-2:] == [21, 22]  # same content, different messages: both kept
    state.apply(DeliveredEvent(sender="operator", recipient="beta", body="go", at=9.5, id=22, seq=13))
    assert [(e.id, e.delivered) for e in state.log][-2:] == [(21, False), (22, True)]
    # The snapshot's rows carry their ids too: a replayed `sent` for one of them is not a second entry.
    state.apply(SentEvent(sender="alpha", recipient="operator", body="hi", at=5.0, id=1, seq=14))
    assert [e.id for e in state.log].count(1) == 1
