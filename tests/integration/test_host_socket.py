"""host.sock end to end: a real in-process hive (via `hive_trio.testing`), a real unix socket, and the
exact request lines a hyperhive client writes."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from hive_trio.clients.host import HostClient, HostRefused
from hive_trio.core.coordinator import Coordinator
from hive_trio.errors import Busy, UnknownAgent
from hive_trio.lifecycle.bare import BareLifecycle
from hive_trio.records import AgentRecord, Approval, ApprovalKind, ApprovalStatus, TransientKind
from hive_trio.testing import InProcessHive, open_test_hive

HOSTILE_NAMES = ["../x", "A", "", "a" * 200, "a/b", "manager", "system", "operator", "a\x00b"]


@pytest.fixture
def hive_agents() -> Sequence[str]:
    return ("alpha", "beta")


async def line(client: HostClient, raw: bytes) -> dict[str, Any]:
    return await client.request_raw(raw + b"\n")


def ok(response: dict[str, Any]) -> dict[str, Any]:
    assert response["version"] == 1, response
    assert response["ok"] is True and response["error"] is None, response
    return response


def refused(response: dict[str, Any], reason: str) -> None:
    assert response["version"] == 1 and response["ok"] is False, response
    assert isinstance(response["error"], str) and reason in response["error"], response


# ------------------------------------------------------------------------------ the verbs, pinned


async def test_hyperhive_read_verbs(hive: InProcessHive) -> None:
    async with hive.open_host() as host:
        assert ok(await line(host, b'{"cmd":"list"}'))["agents"] == ["alpha", "beta"]
        rows = ok(await line(host, b'{"cmd":"agent_status"}'))["agent_statuses"]
        assert [r["name"] for r in rows] == ["alpha", "beta"]
        assert set(rows[0]) >= {
            "name", "running", "failed", "needs_update", "needs_login", "paused", "parent", "deployed_sha",
            "active_model", "status_text", "status_set_at", "url", "transient", "pending_messages",
        }  # fmt: skip
        urls = ok(await line(host, b'{"cmd":"urls"}'))["urls"]
        assert set(urls) == {"domain", "home"} and urls["domain"]
        assert ok(await line(host, b'{"cmd":"set_paused","name":"alpha","paused":true}'))["paused"] is True
        assert ok(await line(host, b'{"cmd":"set_paused","name":"alpha","paused":true}'))["paused"] is True
        assert [r["paused"] for r in ok(await line(host, b'{"cmd":"agent_status"}'))["agent_statuses"]] == [
            True,
            False,
        ]
        refused(await line(host, b'{"cmd":"set_paused","name":"gamma","paused":true}'), "unknown agent 'gamma'")


async def test_messages_and_questions_as_the_operator(hive: InProcessHive) -> None:
    async with hive.open_host() as host, hive.open_agent("alpha") as alpha, hive.open_agent("beta") as beta:
        sent = ok(await line(host, b'{"cmd":"send","to":"alpha","body":"from the top"}'))
        got = (await alpha.call("recv"))["messages"]
        assert [(m["id"], m["from"], m["body"]) for m in got] == [(sent["id"], "operator", "from the top")]
        refused(await line(host, b'{"cmd":"send","to":"gamma","body":"x"}'), "unknown agent 'gamma'")
        assert len(ok(await line(host, b'{"cmd":"broadcast","body":"all hands"}'))["ids"]) == 2
        assert "all hands" in (await beta.call("recv"))["messages"][0]["body"]
        await alpha.call("send", to="operator", body="done")

        q = await alpha.call("ask", question="merge?", options=["yes", "no"])
        qid = q["question_id"]
        open_qs = ok(await line(host, b'{"cmd":"questions"}'))["questions"]
        assert [(x["id"], x["asker"], x["options"]) for x in open_qs] == [(qid, "alpha", ["yes", "no"])]
        answered = ok(await line(host, json.dumps({"cmd": "answer", "id": qid, "answer": "yes"}).encode()))
        assert answered["question"]["answer"] == "yes"
        refused(await line(host, json.dumps({"cmd": "answer", "id": qid, "answer": "no"}).encode()), "already answered")
        assert ok(await line(host, b'{"cmd":"questions"}'))["questions"] == []
        assert [x["id"] for x in ok(await line(host, b'{"cmd":"questions","all":true}'))["questions"]] == [qid]
        event = json.loads((await alpha.call("recv", max=5))["messages"][-1]["body"])
        assert (event["event"], event["answer"], event["answerer"]) == ("question_answered", "yes", "operator")

        q2 = (await alpha.call("ask", question="lunch?"))["question_id"]
        cancelled = ok(await line(host, json.dumps({"cmd": "cancel_question", "id": q2}).encode()))["question"]
        assert (cancelled["answer"], cancelled["cancelled"]) == ("[cancelled]", True)
        refused(await line(host, b'{"cmd":"cancel_question","id":9999}'), "no question #9999")


async def test_approvals_are_listed_by_status(hive: InProcessHive) -> None:
    coordinator = hive.coordinator
    first = await coordinator.propose_approval("alpha", ApprovalKind.SPAWN, description="a helper")
    second = await coordinator.propose_approval("beta", ApprovalKind.APPLY_COMMIT, commit_ref="abc1234")
    await coordinator.resolve_approval(second.id, ApprovalStatus.DENIED, note="no")
    async with hive.open_host() as host:
        assert [a["id"] for a in ok(await line(host, b'{"cmd":"pending"}'))["approvals"]] == [first.id]
        every = ok(await line(host, b'{"cmd":"approvals"}'))["approvals"]
        assert [(a["id"], a["status"]) for a in every] == [(first.id, "pending"), (second.id, "denied")]
        denied = ok(await line(host, b'{"cmd":"approvals","status":"denied"}'))["approvals"]
        assert [a["id"] for a in denied] == [second.id]
        refused(await line(host, b'{"cmd":"approve","id":1}'), "without a lifecycle backend")


async def test_spawn_and_destroy_fall_back_to_bare_agents_without_a_lifecycle(hive: InProcessHive) -> None:
    async with hive.open_host() as host:
        spawned = ok(await line(host, b'{"cmd":"spawn","name":"gamma"}'))["agent"]
        assert spawned["name"] == "gamma"
        assert hive.socket_path("gamma").exists()
        refused(await line(host, b'{"cmd":"spawn","name":"gamma"}'), "already exists")
        async with hive.open_agent("gamma") as gamma:
            assert (await gamma.call("whoami"))["name"] == "gamma"
        ok(await line(host, b'{"cmd":"destroy","name":"gamma"}'))
        assert not hive.socket_path("gamma").exists()
        assert ok(await line(host, b'{"cmd":"tombstones"}'))["agents"] == ["gamma"]
        assert ok(await line(host, b'{"cmd":"list"}'))["agents"] == ["alpha", "beta"]
        refused(await line(host, b'{"cmd":"destroy","name":"gamma"}'), "unknown agent 'gamma'")
        refused(await line(host, b'{"cmd":"destroy","name":"beta","purge":true}'), "lifecycle backend")
        for request in (
            b'{"cmd":"restart","name":"alpha"}',
            b'{"cmd":"rebuild","name":"alpha"}',
            b'{"cmd":"kill","name":"alpha"}',
            b'{"cmd":"purge_tombstone","name":"gamma"}',
            b'{"cmd":"request_spawn","name":"delta"}',
            b'{"cmd":"start","scope":{"agents":true}}',
            b'{"cmd":"stop","scope":{"agent_names":["alpha"]}}',
            b'{"cmd":"deny","id":1,"note":"no"}',
        ):
            refused(await line(host, request), "without a lifecycle backend")
        refused(await line(host, b'{"cmd":"start","scope":{}}'), "scope names no agents")  # whatever the backend


class RecordingLifecycle(BareLifecycle):
    """A lifecycle backend that records what host.sock asked of it (protocol routing only)."""

    def __init__(self, coord: Coordinator) -> None:
        super().__init__(coord)
        self.calls: list[tuple[Any, ...]] = []

    async def spawn(self, name: str, *, parent: str | None = None) -> AgentRecord:
        self.calls.append(("spawn", name))
        return AgentRecord(name=name, created_at=0.0)

    async def start(self, name: str) -> None:
        if name == "beta":
            raise Busy("beta is busy stopping")
        self.calls.append(("start", name))

    async def stop(self, name: str, *, graceful: bool = True) -> None:
        self.calls.append(("stop", name, graceful))

    async def restart(self, name: str) -> None:
        self.calls.append(("restart", name))

    async def rebuild(self, name: str) -> None:
        self.calls.append(("rebuild", name))

    async def destroy(self, name: str, *, purge: bool = False) -> None:
        self.calls.append(("destroy", name, purge))

    async def purge_tombstone(self, name: str) -> None:
        raise UnknownAgent(name)

    def _approval(self, approval_id: int, status: ApprovalStatus, note: str | None) -> Approval:
        return Approval(
            id=approval_id, agent="alpha", kind=ApprovalKind.SPAWN, status=status, requested_at=0, note=note
        )

    async def request_spawn(self, name: str, description: str | None, *, requested_by: str) -> Approval:
        self.calls.append(("request_spawn", name, description, requested_by))
        return self._approval(9, ApprovalStatus.PENDING, None)

    async def request_apply_commit(
        self, agent: str, commit_ref: str, description: str | None, *, requested_by: str
    ) -> Approval:
        self.calls.append(("request_apply_commit", agent, commit_ref, requested_by))
        return self._approval(10, ApprovalStatus.PENDING, None)

    async def approve(self, approval_id: int, *, note: str | None = None) -> Approval:
        self.calls.append(("approve", approval_id, note))
        return self._approval(approval_id, ApprovalStatus.APPROVED, note)

    async def deny(self, approval_id: int, *, note: str | None = None) -> Approval:
        self.calls.append(("deny", approval_id, note))
        return self._approval(approval_id, ApprovalStatus.DENIED, note)


async def test_lifecycle_verbs_go_through_coordinator_ops(hive_dir: Path) -> None:
    async with (
        open_test_hive(agents=("alpha", "beta"), directory=hive_dir, lifecycle=RecordingLifecycle) as hive,
        hive.open_host() as host,
        hive.open_manager() as manager,
    ):
        ops = hive.coordinator.ops
        assert isinstance(ops, RecordingLifecycle)
        ok(await line(host, b'{"cmd":"restart","name":"alpha"}'))
        ok(await line(host, b'{"cmd":"rebuild","name":"alpha"}'))
        ok(await line(host, b'{"cmd":"kill","name":"alpha"}'))
        ok(await line(host, b'{"cmd":"spawn","name":"gamma"}'))
        ok(await line(host, b'{"cmd":"destroy","name":"alpha","purge":true}'))
        ok(await line(host, b'{"cmd":"stop","scope":{"agents":true},"graceful":false}'))
        started = await line(host, b'{"cmd":"start","scope":{"agent_names":["alpha","beta"]}}')
        refused(started, "start failed for 1 of 2: beta: beta is busy stopping")
        assert started["agents"] == ["alpha"]
        refused(await line(host, b'{"cmd":"start","scope":{"agent_names":[],"agents":false}}'), "scope names no agents")
        refused(await line(host, b'{"cmd":"stop","scope":{}}'), "scope names no agents")
        refused(await line(host, b'{"cmd":"purge_tombstone","name":"zeta"}'), "unknown agent 'zeta'")
        assert ok(await line(host, b'{"cmd":"request_spawn","name":"delta"}'))["approval"]["id"] == 9
        assert ok(await line(host, b'{"cmd":"approve","id":4,"note":"go"}'))["approval"]["status"] == "approved"
        assert ok(await line(host, b'{"cmd":"deny","id":5}'))["approval"]["status"] == "denied"
        await manager.call("update", name="beta")
        assert (await manager.call("request_apply_commit", agent="beta", commit_ref="ABCDEF1"))["approval_id"] == 10
    ops.calls[5:7] = sorted(ops.calls[5:7])
    assert ops.calls == [
        ("restart", "alpha"),
        ("rebuild", "alpha"),
        ("stop", "alpha", True),
        ("spawn", "gamma"),
        ("destroy", "alpha", True),
        ("stop", "alpha", False),  # a scope's agents are handled concurrently: order sorted here
        ("stop", "beta", False),
        ("start", "alpha"),
        ("request_spawn", "delta", None, "operator"),
        ("approve", 4, "go"),
        ("deny", 5, None),
        ("rebuild", "beta"),
        ("request_apply_commit", "beta", "abcdef1", "manager"),
    ]


async def test_approval_rows_carry_hyperhive_rfc3339_times(hive: InProcessHive) -> None:
    # hyperhive's clients read `requested_at` as a string; a number fails their whole `pending` response.
    coordinator = hive.coordinator
    first = await coordinator.propose_approval(
        "alpha", ApprovalKind.SPAWN, description="a reviewer", requested_by="manager"
    )
    second = await coordinator.propose_approval(
        "beta", ApprovalKind.APPLY_COMMIT, commit_ref="abcdef1", requested_by="manager"
    )
    await coordinator.resolve_approval(second.id, ApprovalStatus.DENIED, note="not now")
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
    (row,) = (await hive.host("pending"))["approvals"]
    assert (row["id"], row["kind"], row["status"], row["resolved_at"]) == (first.id, "spawn", "pending", None)
    assert stamp.fullmatch(row["requested_at"])
    assert row["requested_at"] == datetime.fromtimestamp(first.requested_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    denied = (await hive.host("approvals", status="denied"))["approvals"]
    assert [(a["id"], a["note"]) for a in denied] == [(second.id, "not now")]
    assert stamp.fullmatch(denied[0]["requested_at"]) and stamp.fullmatch(denied[0]["resolved_at"])


# ------------------------------------------------------------------------------ the status feed


async def test_subscribe_acks_then_streams_changed_rows(hive: InProcessHive) -> None:
    async with hive.open_host() as feed:
        ok(await line(feed, b'{"cmd":"subscribe_agent_status"}'))
        await hive.host("set_paused", name="beta", paused=True)
        while True:  # rows from the agents' start may still be on their way; each response is one row
            (row,) = ok(await feed.read_response())["agent_statuses"]
            if (row["name"], row["paused"]) == ("beta", True):
                break
        with hive.coordinator.transient("alpha", TransientKind.RESTARTING):
            while True:  # the spinner shows in the row
                (row,) = ok(await feed.read_response())["agent_statuses"]
                if (row["name"], row["transient"]) == ("alpha", "restarting"):
                    break
        (row,) = ok(await feed.read_response())["agent_statuses"]
        assert (row["name"], row["transient"]) == ("alpha", None)
        await hive.host("spawn", name="gamma")
        await hive.host("destroy", name="gamma")
        removed = None
        while removed is None:
            removed = ok(await feed.read_response()).get("removed")
        assert removed == "gamma"
        # The connection still answers requests.
        assert ok(await line(feed, b'{"cmd":"list"}'))["agents"] == ["alpha", "beta"]


async def test_a_subscriber_that_never_reads_does_not_hold_up_the_daemon(
    hive: InProcessHive, hive_autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with hive.open_agent("alpha") as alpha:
        await alpha.call("set_status", text="x" * 60_000)  # fat rows fill the socket buffers quickly
    async with hive.open_host() as idle:
        ok(await line(idle, b'{"cmd":"subscribe_agent_status"}'))
        with trio.fail_after(60):  # virtual; a daemon waiting on the idle reader would never get there
            for i in range(1000):
                await hive.host("set_paused", name="alpha", paused=i % 2 == 0)
                if hive.coordinator._hub.dropped_subscribers:
                    break
        assert hive.coordinator._hub.dropped_subscribers == 1  # told to catch up, never waited for
        assert ok(await hive.host("agent_status"))["agent_statuses"][0]["name"] == "alpha"
    # It leaves with a full, unread buffer (the daemon sees a reset): an ordinary goodbye, not an error.
    await trio.testing.wait_all_tasks_blocked()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# ------------------------------------------------------------------------------ bad input


MALFORMED = [
    (b"not json at all", "not valid JSON"),
    (b"\xff\xfe\xfd", "not valid UTF-8"),
    (b"[1,2,3]", "must be a JSON object"),
    (b"{}", "has no 'cmd'"),
    (b'{"cmd":"selfdestruct"}', "unknown cmd 'selfdestruct'"),
    (b'{"cmd":"restart"}', "required field missing @ $.name"),
    (b'{"cmd":"restart","name":["alpha"]}', "expected a string, got a list @ $.name"),
    (b'{"cmd":"approve","id":"1"}', "expected an integer"),
    (b'{"cmd":"answer","id":9223372036854775808,"answer":"x"}', "fits in 64 bits"),
    (b'{"cmd":"start","scope":"everything"}', "expected an object"),
    (b'{"cmd":"send","to":"alpha"}', "required field missing @ $.body"),
]


async def test_malformed_requests_and_hostile_names_are_refused_and_the_daemon_goes_on(
    hive: InProcessHive,
) -> None:
    before = sorted(str(p) for p in hive.directory.rglob("*"))
    async with hive.open_host() as host:
        for raw, reason in MALFORMED:
            refused(await line(host, raw), reason)
        for name in HOSTILE_NAMES:
            for cmd in ("spawn", "destroy", "restart", "set_paused", "purge_tombstone", "kill", "request_spawn"):
                fields: dict[str, Any] = {"cmd": cmd, "name": name, "paused": True}
                refused(await line(host, json.dumps(fields).encode()), "agent name" if name not in (
                    "manager", "system", "operator") else "reserved")  # fmt: skip
            refused(await line(host, json.dumps({"cmd": "start", "scope": {"agent_names": [name]}}).encode()), "")
        # The same connection still works, and so does everything else.
        assert [r["name"] for r in ok(await line(host, b'{"cmd":"agent_status"}'))["agent_statuses"]] == [
            "alpha",
            "beta",
        ]
    assert (await hive.host("list"))["agents"] == ["alpha", "beta"]
    after = sorted(str(p) for p in hive.directory.rglob("*") if not p.name.startswith("hive.db"))
    assert [p for p in after if p not in before] == []
    assert sorted(os.listdir(hive.directory)) == ["run", "state"]


async def test_an_oversized_request_closes_only_that_connection() -> None:
    async with open_test_hive(agents=["alpha"], max_frame_bytes=1024) as hive:
        async with hive.open_host() as bystander, hive.open_host() as greedy:
            await greedy.send_raw(b'{"cmd":"send","to":"alpha","body":"' + b"x" * 5000)
            refused(await greedy.read_response(), "frame limit")
            with pytest.raises(Exception, match="closed the connection"):
                await greedy.read_response()
            assert ok(await line(bystander, b'{"cmd":"list"}'))["agents"] == ["alpha"]


async def test_host_sock_is_0660(hive: InProcessHive) -> None:
    st = os.stat(hive.host_socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660


async def test_host_sock_goes_to_the_admin_group_where_it_exists() -> None:
    import grp

    group = grp.getgrgid(os.getgid()).gr_name  # a group this process may give files to
    async with open_test_hive(admin_group=group) as hive:
        assert os.stat(hive.host_socket).st_gid == grp.getgrnam(group).gr_gid
    async with open_test_hive(admin_group="no-such-group-here") as hive:
        assert (await hive.host("list"))["agents"] == []  # a missing group is not an error


async def test_refusal_text_reaches_the_client_as_host_refused(hive: InProcessHive) -> None:
    with pytest.raises(HostRefused, match="unknown agent 'nobody'") as caught:
        await hive.host("restart", name="nobody") if not isinstance(
            hive.coordinator.ops, BareLifecycle
        ) else await hive.host("set_paused", name="nobody", paused=False)
    assert caught.value.response["ok"] is False
