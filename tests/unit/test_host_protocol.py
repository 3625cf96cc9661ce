"""host.sock's wire, sans-IO: every verb's exact request line, every way a line can be wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hive_trio.records import (
    ApprovalStatus,
    HostAgentStatus,
    HostAnswer,
    HostApprovals,
    HostApprove,
    HostBroadcast,
    HostCancelQuestion,
    HostDashboardUrl,
    HostDeny,
    HostDestroy,
    HostInbox,
    HostKill,
    HostList,
    HostLogTail,
    HostPending,
    HostPurgeTombstone,
    HostQuestions,
    HostRebuild,
    HostReply,
    HostRequestSpawn,
    HostRestart,
    HostSend,
    HostSetPaused,
    HostSpawn,
    HostStart,
    HostStop,
    HostSubscribeAgentStatus,
    HostTombstones,
    HostUrls,
    Scope,
)
from hive_trio.sockets.host.protocol import (
    COMMANDS,
    HostProtocolError,
    encode_request,
    error_response,
    ok_response,
    parse_request,
)

# The exact lines a client writes, pinned: hyperhive's verbs first, then ours.
REQUEST_LINES: list[tuple[bytes, object]] = [
    (b'{"cmd":"list"}', HostList()),
    (b'{"cmd":"agent_status"}', HostAgentStatus()),
    (b'{"cmd":"subscribe_agent_status"}', HostSubscribeAgentStatus()),
    (b'{"cmd":"set_paused","name":"alpha","paused":true}', HostSetPaused(name="alpha", paused=True)),
    (
        b'{"cmd":"start","scope":{"agent_names":["alpha","beta"],"agents":false}}',
        HostStart(scope=Scope(agent_names=["alpha", "beta"], agents=False)),
    ),
    (b'{"cmd":"start","scope":{"agents":true}}', HostStart(scope=Scope(agents=True))),
    (
        b'{"cmd":"stop","scope":{"agent_names":["alpha"]},"graceful":false}',
        HostStop(scope=Scope(agent_names=["alpha"]), graceful=False),
    ),
    (b'{"cmd":"restart","name":"alpha"}', HostRestart(name="alpha")),
    (b'{"cmd":"urls"}', HostUrls()),
    (b'{"cmd":"request_spawn","name":"gamma"}', HostRequestSpawn(name="gamma")),
    (b'{"cmd":"kill","name":"alpha"}', HostKill(name="alpha")),
    (b'{"cmd":"spawn","name":"gamma"}', HostSpawn(name="gamma")),
    (b'{"cmd":"rebuild","name":"alpha"}', HostRebuild(name="alpha")),
    (b'{"cmd":"destroy","name":"alpha"}', HostDestroy(name="alpha", purge=False)),
    (b'{"cmd":"destroy","name":"alpha","purge":true}', HostDestroy(name="alpha", purge=True)),
    (b'{"cmd":"purge_tombstone","name":"alpha"}', HostPurgeTombstone(name="alpha")),
    (b'{"cmd":"pending"}', HostPending(status=ApprovalStatus.PENDING)),
    (b'{"cmd":"approvals"}', HostApprovals(status=None)),
    (b'{"cmd":"approvals","status":"denied"}', HostApprovals(status=ApprovalStatus.DENIED)),
    (b'{"cmd":"approve","id":7}', HostApprove(id=7)),
    (b'{"cmd":"approve","id":7,"note":"ship it"}', HostApprove(id=7, note="ship it")),
    (b'{"cmd":"deny","id":7,"note":"not now"}', HostDeny(id=7, note="not now")),
    (b'{"cmd":"questions"}', HostQuestions()),
    (b'{"cmd":"questions","all":true}', HostQuestions(all=True)),
    (b'{"cmd":"answer","id":3,"answer":"yes"}', HostAnswer(id=3, answer="yes")),
    (b'{"cmd":"answer","id":3,"answer":["a","b"]}', HostAnswer(id=3, answer=["a", "b"])),
    (b'{"cmd":"cancel_question","id":3}', HostCancelQuestion(id=3)),
    (b'{"cmd":"send","to":"alpha","body":"hi"}', HostSend(to="alpha", body="hi")),
    (b'{"cmd":"send","to":"manager","body":"hi"}', HostSend(to="manager", body="hi")),
    (b'{"cmd":"broadcast","body":"all hands"}', HostBroadcast(body="all hands")),
    (b'{"cmd":"tombstones"}', HostTombstones()),
    # Beyond hyperhive's v1 (issue 11).
    (b'{"cmd":"inbox"}', HostInbox(limit=20)),
    (b'{"cmd":"reply","id":4,"body":"yes"}', HostReply(id=4, body="yes")),
    (b'{"cmd":"dashboard_url"}', HostDashboardUrl()),
    (b'{"cmd":"log_tail","name":"alpha"}', HostLogTail(name="alpha")),
    (b'{"cmd":"log_tail","name":"manager","offset":10}', HostLogTail(name="manager", offset=10)),
]


@pytest.mark.parametrize(("line", "expected"), REQUEST_LINES, ids=[line.decode() for line, _ in REQUEST_LINES])
def test_each_request_line_parses_to_its_record(line: bytes, expected: object) -> None:
    assert parse_request(line) == expected


def test_every_verb_is_pinned() -> None:
    pinned = {json.loads(line)["cmd"] for line, _ in REQUEST_LINES}
    assert pinned == set(COMMANDS)


def test_unknown_keys_are_ignored_as_serde_does() -> None:
    # hyperhive's clients may send fields we do not know (serde ignores unknown fields by default).
    assert parse_request(b'{"cmd":"restart","name":"alpha","trace":"x"}') == HostRestart(name="alpha")
    line = b'{"cmd":"start","scope":{"agent_names":["alpha"],"manager":false}}'
    assert parse_request(line) == HostStart(scope=Scope(agent_names=["alpha"]))


MALFORMED: list[tuple[bytes, str]] = [
    (b"not json", "not valid JSON"),
    (b'{"cmd": "list"', "not valid JSON"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (b'{"cmd":"send","to":"alpha","body":"\xc3"}', "not valid UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"list"', "must be a JSON object"),
    (b"null", "must be a JSON object"),
    (b"42", "must be a JSON object"),
    (b"{}", "has no 'cmd'"),
    (b'{"name":"alpha"}', "has no 'cmd'"),
    (b'{"cmd":7}', "'cmd' must be a string, got an integer"),
    (b'{"cmd":["list"]}', "'cmd' must be a string, got a list"),
    (b'{"cmd":"reboot_host"}', "unknown cmd 'reboot_host'"),
    (b'{"cmd":"List"}', "unknown cmd 'List'"),
    (b'{"cmd":"restart"}', "required field missing @ $.name"),
    (b'{"cmd":"restart","name":null}', "expected a string, got null @ $.name"),
    (b'{"cmd":"restart","name":5}', "expected a string, got an integer @ $.name"),
    (b'{"cmd":"set_paused","name":"alpha"}', "required field missing @ $.paused"),
    (b'{"cmd":"set_paused","name":"alpha","paused":"yes"}', "expected a boolean, got a string @ $.paused"),
    (b'{"cmd":"start"}', "required field missing @ $.scope"),
    (b'{"cmd":"start","scope":"alpha"}', "expected an object, got a string @ $.scope"),
    (b'{"cmd":"start","scope":{"agent_names":"alpha"}}', "expected a list, got a string @ $.scope.agent_names"),
    (b'{"cmd":"start","scope":{"agent_names":[1]}}', "expected a string, got an integer @ $.scope.agent_names[0]"),
    (b'{"cmd":"approve","id":"7"}', "expected an integer, got a string @ $.id"),
    (b'{"cmd":"approve","id":true}', "expected an integer, got a boolean @ $.id"),
    (b'{"cmd":"approve","id":7.5}', "expected an integer, got a number @ $.id"),
    (b'{"cmd":"approve","id":100000000000000000000000000000}', "fits in 64 bits @ $.id"),
    (b'{"cmd":"cancel_question","id":-9223372036854775809}', "fits in 64 bits @ $.id"),
    (b'{"cmd":"approvals","status":"lost"}', "'lost' is not a valid ApprovalStatus @ $.status"),
    (b'{"cmd":"answer","id":3,"answer":7}', "expected a string or a list of strings @ $.answer"),
    (b'{"cmd":"send","to":"alpha"}', "required field missing @ $.body"),
    (b'{"cmd":"send","to":"system","body":"x"}', "never receives"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
]


@pytest.mark.parametrize(("line", "reason"), MALFORMED, ids=[repr(line[:40]) for line, _ in MALFORMED])
def test_malformed_requests_are_refused_with_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(HostProtocolError) as caught:
        parse_request(line)
    assert reason in str(caught.value)


HOSTILE_NAMES = ["../x", "A", "", "a" * 200, "a/b", "manager", "system", "operator", "a\x00b", ".", "-a", "a b"]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
@pytest.mark.parametrize("cmd", ["spawn", "restart", "destroy", "kill", "rebuild", "purge_tombstone", "request_spawn"])
def test_hostile_names_are_refused_before_any_handler(cmd: str, name: str) -> None:
    with pytest.raises(HostProtocolError, match=rf"^{cmd}: .*(agent name|reserved)"):
        parse_request(encode_request(cmd, name=name).rstrip(b"\n"))


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_hostile_names_in_scopes_and_recipients_are_refused(name: str) -> None:
    with pytest.raises(HostProtocolError):
        parse_request(encode_request("start", scope={"agent_names": ["alpha", name]}))
    if name not in ("manager", "operator"):  # both are real recipients of a message
        with pytest.raises(HostProtocolError):
            parse_request(encode_request("send", to=name, body="x"))


def test_responses_carry_version_ok_and_error() -> None:
    def decode(line: bytes) -> dict[str, Any]:
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        data: dict[str, Any] = json.loads(line)
        return data

    assert decode(ok_response(agents=["a"])) == {"version": 1, "ok": True, "error": None, "agents": ["a"]}
    assert decode(error_response("no")) == {"version": 1, "ok": False, "error": "no"}
    assert decode(ok_response(text="line\nbreak"))["text"] == "line\nbreak"
