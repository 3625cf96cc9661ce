"""What a harness reports, as the operator and the manager see it: agent_status, transcripts, usage, login."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from harness_support import open_test_channel, system_events
from lifecycle_support import drain

from hive_trio.clients.harness import ToolError
from hive_trio.clients.host import HostRefused
from hive_trio.records import unstructure_event
from hive_trio.records.harness import TurnEventEvent
from hive_trio.testing import InProcessHive, open_test_hive


@pytest.fixture
def hive_agents() -> list[str]:
    return ["alpha", "beta"]


async def status_row(hive: InProcessHive, name: str) -> dict[str, Any]:
    rows = {r["name"]: r for r in (await hive.host("agent_status"))["agent_statuses"]}
    return rows[name]


async def test_agent_status_shows_model_status_text_and_usage(hive: InProcessHive) -> None:
    async with open_test_channel(hive.coordinator, "alpha") as channel:
        await channel.turn_started("t1", [1, 2])
        row = await status_row(hive, "alpha")
        assert row["status_text"] == "working"
        usage = {"model": "claude-x", "input_tokens": 100, "output_tokens": 20, "cost_usd": 0.25}
        exceeded = await channel.turn_finished("t1", "ok", usage=_Usage(**usage))
        assert exceeded is False
        row = await status_row(hive, "alpha")
        assert row["active_model"] == "claude-x"
        assert row["status_text"] == "idle"
        assert row["usage"]["today_tokens"] == 120 and row["usage"]["total_tokens"] == 120
        assert row["usage"]["today_cost_usd"] == pytest.approx(0.25)
        assert row["budget_exceeded"] is False and row["pending_reminders"] == 0
        await channel.report_state(status_text="reading the diff", active_model="claude-y")
        row = await status_row(hive, "alpha")
        assert (row["status_text"], row["active_model"]) == ("reading the diff", "claude-y")
        await channel.report_state(status_text="")
        assert (await status_row(hive, "alpha"))["status_text"] is None
    # Another agent's row is untouched.
    beta = await status_row(hive, "beta")
    assert beta["active_model"] is None and beta["usage"]["total_tokens"] == 0


class _Usage:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


async def test_auth_failure_sets_needs_login_once_and_an_ok_turn_clears_it(hive: InProcessHive) -> None:
    coord = hive.coordinator
    async with open_test_channel(coord, "alpha") as channel:
        for turn in ("t1", "t2"):
            await channel.turn_started(turn, [])
            await channel.turn_finished(turn, "auth_failed", error="401 invalid x-api-key")
        assert (await status_row(hive, "alpha"))["needs_login"] is True
        events = [e["event"] for e in await system_events(coord, "manager")]
        assert events == ["needs_login"]
        await channel.turn_started("t3", [])
        await channel.turn_finished("t3", "ok")
        assert (await status_row(hive, "alpha"))["needs_login"] is False
        events = await system_events(coord, "manager")
        assert [e["event"] for e in events] == ["needs_login", "logged_in"]
        assert events[-1]["agent"] == "alpha"


async def test_failed_turns_tell_the_manager_at_most_once_per_interval(
    hive_dir: Path, hive_autojump_clock: trio.testing.MockClock
) -> None:
    async with open_test_hive(agents=["alpha"], directory=hive_dir, turn_failed_notice_interval=300) as hive:
        coord = hive.coordinator
        async with open_test_channel(coord, "alpha") as channel:
            for i in range(5):
                await channel.turn_finished(f"f{i}", "failed", error="runtime crashed")
            await channel.turn_finished("tt", "timeout", error="no answer in 600 s")
            notes = [e for e in await system_events(coord, "manager") if e["event"] == "turn_failed"]
            assert len(notes) == 1 and "runtime crashed" in notes[0]["note"]
            await trio.sleep(301)
            await channel.turn_finished("f9", "timeout", error="slow")
            notes = [e for e in await system_events(coord, "manager") if e["event"] == "turn_failed"]
            assert len(notes) == 2
            assert "turn timeout: slow" in notes[1]["note"] and "5 more failed turn(s)" in notes[1]["note"]
            # An interrupted turn is not a failure the manager needs to hear of.
            await trio.sleep(301)
            await channel.turn_finished("i1", "interrupted")
            assert len([e for e in await system_events(coord, "manager") if e["event"] == "turn_failed"]) == 2


async def test_turns_stream_as_dashboard_events_in_the_seq_stream(hive: InProcessHive) -> None:
    coord = hive.coordinator
    with coord.subscribe(buffer=64) as sub:
        async with open_test_channel(coord, "alpha") as channel:
            await channel.turn_started("t1", [7])
            await channel.turn_event("t1", "tool_use", tool="Bash", input={"command": "ls"})
            await channel.turn_event("t1", "text", text="done")
            await channel.turn_finished("t1", "ok", usage=_Usage(input_tokens=3, output_tokens=4))
        frames = []
        while True:
            try:
                frames.append(unstructure_event(sub.receive.receive_nowait()))  # type: ignore[arg-type]
            except trio.WouldBlock:
                break
    turn = [f for f in frames if f["kind"].startswith("turn_")]
    assert [f["kind"] for f in turn] == ["turn_started", "turn_event", "turn_event", "turn_finished"]
    assert turn[0] == {"kind": "turn_started", "agent": "alpha", "turn_id": "t1", "message_ids": [7]} | {
        "at": turn[0]["at"],
        "seq": turn[0]["seq"],
    }
    assert turn[1]["event_kind"] == "tool_use" and turn[1]["tool"] == "Bash"
    assert turn[3]["outcome"] == "ok" and turn[3]["input_tokens"] == 3
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_a_huge_event_is_capped_in_the_transcript_and_on_the_dashboard(
    hive_dir: Path,
) -> None:
    async with open_test_hive(agents=["alpha"], directory=hive_dir, transcript_max_text=1000) as hive:
        coord = hive.coordinator
        with coord.subscribe(buffer=64) as sub:
            async with open_test_channel(coord, "alpha") as channel:
                await channel.turn_event("t1", "text", text="é" * 200_000)
                await channel.turn_event("t1", "tool_use", tool="Write", input={"content": "x" * 50_000})
            events = [e for e in drain(sub) if isinstance(e, TurnEventEvent)]
        entries = (await hive.host("transcript", name="alpha"))["entries"]
        text = entries[0]["text"]
        assert len(text.encode()) < 1100 and text.endswith("[cut by the daemon: 400000 bytes in all]")
        assert len(entries[1]["input_json"].encode()) < 1100
        assert events[0].text is not None and len(events[0].text.encode()) < 2200  # the dashboard's own cap


async def test_transcript_rows_are_capped_per_agent_and_survive_a_restart(hive_dir: Path) -> None:
    async with open_test_hive(agents=["alpha", "beta"], directory=hive_dir, transcript_max_rows=5) as hive:
        async with open_test_channel(hive.coordinator, "alpha") as alpha:
            for i in range(12):
                await alpha.turn_event("t1", "text", text=f"line {i}")
        async with open_test_channel(hive.coordinator, "beta") as beta:
            await beta.turn_event("b1", "text", text="beta's line")
    async with open_test_hive(directory=hive_dir, transcript_max_rows=5) as hive:
        entries = (await hive.host("transcript", name="alpha", limit=100))["entries"]
        assert [e["text"] for e in entries] == [f"line {i}" for i in range(7, 12)]
        last_two = (await hive.host("transcript", name="alpha", limit=2))["entries"]
        assert [e["text"] for e in last_two] == ["line 10", "line 11"]
        after = (await hive.host("transcript", name="alpha", since=entries[2]["id"]))["entries"]
        assert [e["text"] for e in after] == ["line 10", "line 11"]
        assert [e["text"] for e in (await hive.host("transcript", name="beta"))["entries"]] == ["beta's line"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "../etc"}, "transcript"),
        ({"name": "Alpha"}, "transcript"),
        ({"name": "nobody"}, "nobody"),
        ({"name": "alpha", "limit": 0}, "limit"),
        ({"name": "alpha", "limit": 10**6}, "limit"),
        ({"name": "alpha", "since": "x"}, "since"),
    ],
)
async def test_transcript_refuses_bad_requests(hive: InProcessHive, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(HostRefused, match=message):
        await hive.host("transcript", **fields)


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("turn_started", {"turn_id": ""}, "turn_id"),
        ("turn_started", {"turn_id": "x" * 500}, "turn_id"),
        ("turn_event", {"turn_id": "t", "kind": "shout"}, "kind"),
        ("turn_finished", {"turn_id": "t", "outcome": "ok", "input_tokens": -5}, "negative"),
        ("turn_finished", {"turn_id": "t", "outcome": "maybe"}, "outcome"),
        ("turn_finished", {"turn_id": "t", "outcome": "ok", "cost_usd": -1}, "negative"),
        ("wait_control", {"wait_seconds": 1000}, "wait_seconds"),
        ("request_permission", {"tool": "Bash", "ttl_seconds": -1}, "ttl_seconds"),
    ],
)
async def test_bad_reports_are_refused_with_a_reason(
    hive: InProcessHive, tool: str, arguments: dict[str, Any], message: str
) -> None:
    async with open_test_channel(hive.coordinator, "alpha") as channel:
        with pytest.raises(ToolError, match=message):
            await channel._call(tool, arguments)
        # The channel still works after a refusal.
        await channel.turn_started("ok", [])
