"""The operator's side of a harness: permission requests, interrupts and control, budgets, reminders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from harness_support import open_test_channel, system_events
from lifecycle_support import drain, eventually

from hive_trio.clients.harness import Control, HarnessChannel
from hive_trio.clients.harness import PermissionDecision as ClientDecision
from hive_trio.clients.host import HostRefused
from hive_trio.records import SYSTEM_SENDER
from hive_trio.records.harness import PermissionAddedEvent, PermissionDecision, PermissionResolvedEvent
from hive_trio.rules.config import Config
from hive_trio.store import permissions as permissions_sql
from hive_trio.testing import InProcessHive, open_test_hive

# 2027-01-01T23:00:00Z: an hour before a UTC midnight, for the budget's day boundary.
BEFORE_MIDNIGHT = 1_798_844_400.0


@pytest.fixture
def hive_agents() -> list[str]:
    return ["alpha", "beta"]


async def ask(channel: HarnessChannel, out: list[ClientDecision], tool: str = "Bash", **kw: Any) -> None:
    out.append(await channel.request_permission(tool, {"command": "rm -rf build"}, **kw))


async def open_requests(hive: InProcessHive) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = (await hive.host("permissions"))["permissions"]
    return requests


async def wait_for_requests(hive: InProcessHive, count: int) -> list[dict[str, Any]]:
    """The open requests once there are `count`, re-read on every event the hive announces."""

    async def enough() -> list[dict[str, Any]] | None:
        found = await open_requests(hive)
        return found if len(found) >= count else None

    found: list[dict[str, Any]] = await eventually(enough, coord=hive.coordinator, what=f"{count} request(s)")
    return found


# ================================================================== permissions


async def test_allow_and_deny_reach_the_harness_and_stay_on_the_audit_trail(hive: InProcessHive) -> None:
    coord = hive.coordinator
    answers: list[ClientDecision] = []
    with coord.subscribe(buffer=64) as sub:
        async with open_test_channel(coord, "alpha") as channel, trio.open_nursery() as nursery:
            nursery.start_soon(ask, channel, answers)
            (request,) = await wait_for_requests(hive, 1)
            assert (request["agent"], request["tool"]) == ("alpha", "Bash")
            assert request["input_json"] == '{"command":"rm -rf build"}'
            assert request["deadline_at"] - request["requested_at"] == pytest.approx(300)
            snapshot = await coord.snapshot()
            assert [p.id for p in snapshot.permissions] == [request["id"]]
            allowed = await hive.host("allow_permission", id=request["id"])
            assert allowed["permission"]["decision"] == "allow"
        assert answers[0].allowed and answers[0].id == request["id"]
        async with open_test_channel(coord, "alpha") as channel, trio.open_nursery() as nursery:
            nursery.start_soon(ask, channel, answers)
            (second,) = await wait_for_requests(hive, 1)
            await hive.host("deny_permission", id=second["id"])
        kinds = [type(e) for e in drain(sub) if isinstance(e, PermissionAddedEvent | PermissionResolvedEvent)]
    assert answers[1].decision == "deny" and "operator" in (answers[1].reason or "")
    assert kinds == [PermissionAddedEvent, PermissionResolvedEvent] * 2
    trail = (await hive.host("permissions", all=True))["permissions"]
    assert [(p["decision"], p["decided_by"]) for p in trail] == [("allow", "operator"), ("deny", "operator")]
    assert await open_requests(hive) == []


async def test_allow_twice_an_unknown_id_and_always_on_a_deny_are_refused(hive: InProcessHive) -> None:
    coord = hive.coordinator
    answers: list[ClientDecision] = []
    async with open_test_channel(coord, "alpha") as channel, trio.open_nursery() as nursery:
        nursery.start_soon(ask, channel, answers)
        (request,) = await wait_for_requests(hive, 1)
        with pytest.raises(HostRefused, match="no permission request #999"):
            await hive.host("allow_permission", id=999)
        with pytest.raises(HostRefused, match="integer"):
            await hive.host("allow_permission", id="1; drop table")
        await hive.host("deny_permission", id=request["id"])
        with pytest.raises(HostRefused, match="already decided: deny by operator"):
            await hive.host("allow_permission", id=request["id"])
        with pytest.raises(HostRefused, match="already decided"):
            await hive.host("deny_permission", id=request["id"])
    assert [a.decision for a in answers] == ["deny"]
    with pytest.raises(Exception, match="only an allow"):
        await coord.reports.decide_permission(request["id"], PermissionDecision.DENY, always=True)


async def test_always_allow_answers_later_requests_of_that_tool_for_that_agent_only(hive: InProcessHive) -> None:
    coord = hive.coordinator
    answers: list[ClientDecision] = []
    async with open_test_channel(coord, "alpha") as channel:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, channel, answers)
            (request,) = await wait_for_requests(hive, 1)
            await hive.host("allow_permission", id=request["id"], always=True)
        # No operator needed now, for this tool and this agent.
        with trio.fail_after(2):
            again = await channel.request_permission("Bash", {"command": "make"})
        assert again.allowed and "always allowed" in (again.reason or "")
    async with open_test_channel(coord, "beta") as beta, trio.open_nursery() as nursery:
        nursery.start_soon(ask, beta, answers)
        (for_beta,) = await wait_for_requests(hive, 1)
        assert for_beta["agent"] == "beta"
        await hive.host("deny_permission", id=for_beta["id"])
    trail = (await hive.host("permissions", all=True))["permissions"]
    assert [(p["agent"], p["decided_by"], p["always"]) for p in trail] == [
        ("alpha", "operator", True),
        ("alpha", "rule", True),
        ("beta", "operator", False),
    ]


async def test_the_deadline_denies_by_default(hive_dir: Path, hive_autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_hive(agents=["alpha"], directory=hive_dir, permission_ttl=60) as hive:
        async with open_test_channel(hive.coordinator, "alpha") as channel:
            start = trio.current_time()
            answer = await channel.request_permission("Bash", {"command": "ls"})
            # Not before the deadline. No upper bound: while the watchdog's read sits in its thread, a
            # loaded machine lets autojump leap to the next registered timer (seen: 3600 s).
            assert trio.current_time() - start >= 60 - 0.01
            short = await channel.request_permission("Bash", {}, ttl_seconds=5)
        assert (answer.decision, short.decision) == ("deny", "deny")
        trail = (await hive.host("permissions", all=True))["permissions"]
        assert {p["decided_by"] for p in trail} == {"ttl"}


async def test_a_deadline_that_passed_while_the_daemon_was_down_is_denied_at_start(
    hive_dir: Path, hive_autojump_clock: trio.testing.MockClock
) -> None:
    async with open_test_hive(agents=["alpha"], directory=hive_dir) as hive:
        coord = hive.coordinator
        # As a daemon that died while the harness waited leaves it: recorded, open, its deadline long gone.
        past = coord.clock() - 1000
        request = await coord.reports.db.write(
            lambda c: permissions_sql.request_tx(
                c, agent="alpha", tool="Bash", input_json="{}", now=past, ttl_seconds=10
            )
        )
    async with open_test_hive(directory=hive_dir) as hive:
        (row,) = (await hive.host("permissions", all=True))["permissions"]
        assert row["id"] == request.id and (row["decision"], row["decided_by"]) == ("deny", "ttl")


async def test_a_harness_that_leaves_withdraws_its_request(hive: InProcessHive) -> None:
    answers: list[ClientDecision] = []
    async with open_test_channel(hive.coordinator, "alpha") as channel, trio.open_nursery() as nursery:
        nursery.start_soon(ask, channel, answers)
        await wait_for_requests(hive, 1)
        nursery.cancel_scope.cancel()

    async def none_open() -> bool:
        return not await open_requests(hive)

    await eventually(none_open, coord=hive.coordinator, what="the request to be withdrawn")
    (row,) = (await hive.host("permissions", all=True))["permissions"]
    assert (row["decision"], row["decided_by"]) == ("deny", "harness")


async def test_the_dashboard_can_allow_and_deny(hive: InProcessHive) -> None:
    from hive_trio.dashboard.actions import perform
    from hive_trio.records.harness import AllowPermissionAction, DenyPermissionAction

    answers: list[ClientDecision] = []
    async with open_test_channel(hive.coordinator, "alpha") as channel, trio.open_nursery() as nursery:
        nursery.start_soon(ask, channel, answers)
        (request,) = await wait_for_requests(hive, 1)
        result = await perform(hive.coordinator, AllowPermissionAction(id=request["id"]))
        assert result["decision"] == "allow"
        with pytest.raises(Exception, match="already decided"):
            await perform(hive.coordinator, DenyPermissionAction(id=request["id"]))
    assert answers[0].allowed


# ================================================================== interrupt and control


async def test_wait_control_wakes_on_interrupt_pause_and_budget(
    hive: InProcessHive, hive_autojump_clock: trio.testing.MockClock
) -> None:
    # Each change writes through sqlite's thread. Under load that write can outlast the 50 ms autojump
    # threshold, and the clock would leap to the poll's own deadline before the change lands.
    hive_autojump_clock.autojump_threshold = 1.0
    results: list[Control] = []

    async def poll(channel: HarnessChannel) -> None:
        results.append(await channel.wait_control(120))

    async with open_test_channel(hive.coordinator, "alpha") as channel:
        assert await channel.wait_control(0) == Control()
        await channel.turn_started("t1", [1])
        for change in (
            lambda: hive.host("interrupt", name="alpha"),
            lambda: hive.host("set_paused", name="alpha", paused=True),
            lambda: hive.host("set_budget", name="alpha", daily_tokens=0),
        ):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll, channel)
                await trio.sleep(10)
                start = trio.current_time()
                await change()
            assert trio.current_time() - start < 1
        # Nothing changes: it waits its whole wait_seconds, then reports the state.
        start = trio.current_time()
        last = await channel.wait_control(30)
        assert trio.current_time() - start == pytest.approx(30, abs=1)
    assert results[0] == Control(interrupt=True)
    assert results[1] == Control(paused=True)
    assert results[2] == Control(paused=True, budget_exceeded=True)
    assert last == Control(paused=True, budget_exceeded=True)  # the interrupt was consumed once


async def test_an_interrupt_between_turns_does_not_stop_the_next_turn(hive: InProcessHive) -> None:
    async with open_test_channel(hive.coordinator, "alpha") as channel:
        reply = await hive.host("interrupt", name="alpha")
        assert reply["harness_connected"] is True and reply["turn_id"] is None
        await channel.turn_started("t2", [])
        assert (await channel.wait_control(0)).interrupt is False
        reply = await hive.host("interrupt", name="alpha")
        assert reply["turn_id"] == "t2"
        assert (await channel.wait_control(0)).interrupt is True


async def test_interrupt_refuses_hostile_and_unknown_names(hive: InProcessHive) -> None:
    for name in ("../alpha", "ALPHA", "a" * 40, "nobody"):
        with pytest.raises(HostRefused):
            await hive.host("interrupt", name=name)


# ================================================================== budgets


async def test_a_budget_parks_the_agent_and_tells_the_manager_once(
    hive_dir: Path, hive_autojump_clock: trio.testing.MockClock
) -> None:
    from hive_trio.testing import TrioWallClock

    clock = TrioWallClock(start=BEFORE_MIDNIGHT)
    async with open_test_hive(agents=["alpha"], directory=hive_dir, clock=clock) as hive:
        coord = hive.coordinator
        reply = await hive.host("set_budget", name="alpha", daily_tokens=100, daily_usd=1.0)
        assert reply["budget"] == {"agent": "alpha", "daily_tokens": 100, "daily_usd": 1.0}
        async with open_test_channel(coord, "alpha") as channel:
            usage = type("U", (), {"input_tokens": 80, "output_tokens": 30, "cost_usd": 0.1})()
            assert await channel.turn_finished("t1", "ok", usage=usage) is True
            assert await channel.turn_finished("t2", "ok", usage=usage) is True
            assert (await channel.wait_control(0)).budget_exceeded is True
            rows = (await hive.host("agent_status"))["agent_statuses"]
            assert rows[0]["budget_exceeded"] is True and rows[0]["usage"]["daily_tokens_limit"] == 100
            events = [e["event"] for e in await system_events(coord, "manager")]
            assert events.count("budget_exceeded") == 1
            # Raising the limit resumes it.
            await hive.host("set_budget", name="alpha", daily_tokens=10_000, daily_usd=1.0)
            assert (await channel.wait_control(0)).budget_exceeded is False
            await hive.host("set_budget", name="alpha", daily_tokens=100)
            assert (await channel.wait_control(0)).budget_exceeded is True
            # The next UTC day resumes it too.
            await trio.sleep(3601)
            assert (await channel.wait_control(0)).budget_exceeded is False
            row = (await hive.host("agent_status"))["agent_statuses"][0]
            assert row["usage"]["today_tokens"] == 0 and row["usage"]["total_tokens"] == 220


async def test_the_configured_default_budget_applies_without_a_row(hive_dir: Path) -> None:
    async with open_test_hive(agents=["alpha"], directory=hive_dir, daily_usd_budget=0.5) as hive:
        async with open_test_channel(hive.coordinator, "alpha") as channel:
            usage = type("U", (), {"cost_usd": 0.6})()
            assert await channel.turn_finished("t1", "ok", usage=usage) is True


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "alpha", "daily_tokens": -1}, "negative"),
        ({"name": "alpha", "daily_usd": -0.5}, "negative"),
        ({"name": "alpha", "daily_tokens": "lots"}, "integer"),
        ({"name": "nobody", "daily_tokens": 5}, "nobody"),
        ({"name": "../../x", "daily_tokens": 5}, "set_budget"),
    ],
)
async def test_set_budget_refuses_bad_input(hive: InProcessHive, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(HostRefused, match=message):
        await hive.host("set_budget", **fields)


# ================================================================== reminders


async def test_a_reminder_arrives_from_system_when_due(
    hive: InProcessHive, hive_autojump_clock: trio.testing.MockClock
) -> None:
    async with hive.open_agent("alpha") as alpha:
        made = await alpha.call("remind", body="check the build", delay_seconds=600)
        assert made["due_at"] == pytest.approx(hive.coordinator.clock() + 600, abs=1)
        row = (await hive.host("agent_status"))["agent_statuses"][0]
        assert row["pending_reminders"] == 1
        assert (await hive.host("reminders", name="alpha"))["reminders"][0]["body"] == "check the build"
        start = trio.current_time()
        got = await alpha.call("recv", wait_seconds=180)
        assert got["messages"] == []
        while not got["messages"]:
            got = await alpha.call("recv", wait_seconds=180)
        # Not before it is due. (Virtual time may jump to a parked recv's deadline while the watchdog's
        # commit is in its worker thread, so the upper bound is one recv later.)
        assert 600 <= trio.current_time() - start <= 600 + 180
        (message,) = got["messages"]
        assert message["from"] == SYSTEM_SENDER and "check the build" in message["body"]
    rows = {r["name"]: r for r in (await hive.host("agent_status"))["agent_statuses"]}
    assert rows["alpha"]["pending_reminders"] == 0


async def test_a_reminder_due_while_the_daemon_was_down_is_delivered_at_start(
    hive_dir: Path, hive_autojump_clock: trio.testing.MockClock
) -> None:
    from hive_trio.testing import TrioWallClock

    async with open_test_hive(agents=["alpha"], directory=hive_dir, clock=TrioWallClock(start=BEFORE_MIDNIGHT)) as hive:
        async with hive.open_manager() as manager:
            await manager.call("remind", body="manager's note", at="2027-01-01T23:30:00Z")
        async with hive.open_agent("alpha") as alpha:
            await alpha.call("remind", body="alpha's note", delay_seconds=60)
    # The daemon comes back two hours later.
    later = TrioWallClock(start=BEFORE_MIDNIGHT + 7200)
    async with open_test_hive(directory=hive_dir, clock=later) as hive:
        async with hive.open_agent("alpha") as alpha:
            got = await alpha.call("recv", wait_seconds=1)
            assert "alpha's note" in got["messages"][0]["body"]
        async with hive.open_manager() as manager:
            got = await manager.call("recv", wait_seconds=1, max=32)
            assert any("manager's note" in m["body"] for m in got["messages"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"body": "x"}, "exactly one"),
        ({"body": "x", "delay_seconds": 5, "at": 5}, "exactly one"),
        ({"body": "x", "delay_seconds": -5}, "delay_seconds"),
        ({"body": "x", "delay_seconds": 10**9}, "366 days"),
        ({"body": "x", "at": "tomorrow"}, "RFC 3339"),
        ({"body": "x", "at": "2027-01-01T09:00:00"}, "time zone"),
        ({"body": "x", "at": True}, "number"),
        ({"body": "  ", "delay_seconds": 5}, "empty"),
        ({"body": "x" * 70_000, "delay_seconds": 5}, "limit"),
    ],
)
async def test_remind_refuses_bad_input(hive: InProcessHive, arguments: dict[str, Any], message: str) -> None:
    async with hive.open_agent("alpha") as alpha:
        with pytest.raises(Exception, match=message):
            await alpha.call("remind", **arguments)


async def test_pending_reminders_are_bounded(hive_dir: Path) -> None:
    async with open_test_hive(agents=["alpha"], directory=hive_dir, max_pending_reminders=3) as hive:
        async with hive.open_agent("alpha") as alpha:
            for _ in range(3):
                await alpha.call("remind", body="x", delay_seconds=60)
            with pytest.raises(Exception, match="3 pending reminders"):
                await alpha.call("remind", body="x", delay_seconds=60)


# ================================================================== the command line


async def test_the_cli_lists_allows_and_interrupts(hive: InProcessHive, capsys: pytest.CaptureFixture[str]) -> None:
    from hive_trio.cli import main

    run_dir = str(hive.config.runtime_dir)

    async def cli(*argv: str) -> tuple[int, str]:
        code = await trio.to_thread.run_sync(main, [argv[0], "--runtime-dir", run_dir, *argv[1:]])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    answers: list[ClientDecision] = []
    async with open_test_channel(hive.coordinator, "alpha") as channel, trio.open_nursery() as nursery:
        nursery.start_soon(ask, channel, answers)
        (request,) = await wait_for_requests(hive, 1)
        code, out = await cli("permissions")
        assert code == 0 and "alpha" in out and "Bash" in out
        code, out = await cli("allow", str(request["id"]), "--always")
        assert code == 0 and "allowed (always" in out
        code, out = await cli("allow", str(request["id"]))
        assert code != 0 and "already decided" in out
        code, out = await cli("deny-permission", "999")
        assert code != 0 and "no permission request #999" in out
        code, out = await cli("interrupt", "alpha")
        assert code == 0 and "interrupting alpha" in out
        assert (await channel.wait_control(0)).interrupt is True
        await channel.turn_event("t1", "text", text="hello operator")
        code, out = await cli("transcript", "alpha")
        assert code == 0 and "hello operator" in out
        code, out = await cli("set-budget", "alpha", "--tokens", "10")
        assert code == 0 and '"daily_tokens": 10' in out
        code, out = await cli("reminders", "alpha")
        assert code == 0 and "no pending reminders" in out
    assert answers[0].allowed


async def test_open_requests_per_agent_are_bounded_and_the_event_input_is_cut(hive: InProcessHive) -> None:
    from hive_trio.core.reports import DASHBOARD_INPUT_MAX, MAX_OPEN_PERMISSIONS

    answers: list[ClientDecision] = []
    with hive.coordinator.subscribe(buffer=256) as sub:
        async with open_test_channel(hive.coordinator, "alpha") as channel, trio.open_nursery() as nursery:
            big = {"content": "x" * 40_000}
            for _ in range(MAX_OPEN_PERMISSIONS):
                nursery.start_soon(lambda: ask_with(channel, answers, big))
            await wait_for_requests(hive, MAX_OPEN_PERMISSIONS)
            with pytest.raises(Exception, match="permission requests waiting"):
                await channel.request_permission("Write", big)
            rows = await open_requests(hive)
            assert len(rows[0]["input_json"]) > 40_000  # the row keeps it (up to the body limit)
            nursery.cancel_scope.cancel()
        added = [e for e in drain(sub) if isinstance(e, PermissionAddedEvent)]
    assert added and all(len(e.input_json.encode()) < DASHBOARD_INPUT_MAX + 100 for e in added)


async def ask_with(channel: HarnessChannel, out: list[ClientDecision], tool_input: dict[str, Any]) -> None:
    out.append(await channel.request_permission("Write", tool_input))


async def test_the_dashboard_reads_an_agents_transcript_and_reminders(config: Config) -> None:
    from dashboard_support import running_hive, url_of

    from hive_trio.clients.dashboard import ActionFailed, open_dashboard_client

    async with running_hive(config) as hive:
        coord = hive.coordinator
        await coord.record_spawn("alpha")
        await coord.reports.remind("alpha", "look again", delay_seconds=600, at=None)
        async with open_test_channel(coord, "alpha") as channel:
            await channel.turn_started("t1", [7])
            await channel.turn_event("t1", "text", text="hello")
            await channel.turn_finished("t1", "ok")
        async with open_dashboard_client(url_of(hive)) as client:
            reply = await client.action("transcript", name="alpha")
            assert [(e["kind"], e["turn_id"]) for e in reply["entries"]] == [
                ("turn_started", "t1"),
                ("text", "t1"),
                ("turn_finished", "t1"),
            ]
            later = await client.action("transcript", name="alpha", since=reply["entries"][0]["id"])
            assert len(later["entries"]) == 2
            reminders = (await client.action("reminders", name="alpha"))["reminders"]
            assert [r["body"] for r in reminders] == ["look again"]
            with pytest.raises(ActionFailed, match="ghost"):
                await client.action("transcript", name="ghost")
            with pytest.raises(ActionFailed, match="limit"):
                await client.action("transcript", name="alpha", limit=0)
            with pytest.raises(ActionFailed, match="ghost"):
                await client.action("reminders", name="ghost")


async def test_permissions_allow_and_deny_as_the_queues_own_verbs(
    hive: InProcessHive, capsys: pytest.CaptureFixture[str]
) -> None:
    from hive_trio.cli import main

    run_dir = str(hive.config.runtime_dir)

    async def cli(*argv: str) -> tuple[int, str]:
        code = await trio.to_thread.run_sync(main, [argv[0], "--runtime-dir", run_dir, *argv[1:]])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    answers: list[ClientDecision] = []
    async with open_test_channel(hive.coordinator, "alpha") as channel, trio.open_nursery() as nursery:
        nursery.start_soon(ask, channel, answers)
        nursery.start_soon(ask, channel, answers)
        first, second = await wait_for_requests(hive, 2)
        code, out = await cli("permissions", "allow", str(first["id"]), "--always")
        assert code == 0 and f"permission #{first['id']}: allowed (always" in out
        code, out = await cli("permissions", "deny", str(second["id"]))
        assert code == 0 and f"permission #{second['id']}: denied" in out
        code, out = await cli("permissions", "frob", "1")
        assert code == 2 and "usage: hive-trio permissions [allow ID [--always] | deny ID]" in out
        code, out = await cli("permissions", "deny", "x")
        assert code == 2 and "expected a positive id" in out
        code, out = await cli("permissions", "--always")
        assert code == 2 and "--always goes with `permissions allow ID`" in out
    assert sorted(a.allowed for a in answers) == [False, True]


@pytest.mark.timeout(30)
async def test_transcript_follow_prints_entries_as_they_are_reported(hive: InProcessHive) -> None:
    import subprocess
    import sys

    argv = [sys.executable, "-m", "hive_trio", "--runtime-dir", str(hive.config.runtime_dir), "transcript", "alpha"]
    async with open_test_channel(hive.coordinator, "alpha") as channel:
        await channel.turn_event("t1", "text", text="before the follow")
        proc = await trio.lowlevel.open_process([*argv, "-f"], stdout=subprocess.PIPE)
        try:
            seen = b""
            assert proc.stdout is not None
            with trio.fail_after(20):
                while b"before the follow" not in seen:
                    seen += await proc.stdout.receive_some(65536)
                await channel.turn_event("t1", "text", text="while following")
                while b"while following" not in seen:
                    seen += await proc.stdout.receive_some(65536)
            assert seen.count(b"before the follow") == 1  # an entry is printed once
        finally:
            proc.kill()
            await proc.wait()
