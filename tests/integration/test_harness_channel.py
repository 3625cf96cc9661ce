"""The harness channel: a socketpair per launch, served as the run's agent; nothing else can reach it."""

from __future__ import annotations

import errno
import json
import os
import sys
import textwrap
from functools import partial
from pathlib import Path

import pytest
import trio
from harness_support import open_test_channel
from lifecycle_support import eventually

from hive_trio.clients.mcp import ToolError
from hive_trio.testing import InProcessHive, open_test_hive

# A stand-in harness: reports one turn on the inherited channel, writes what the test checks, then idles.
FAKE_HARNESS = textwrap.dedent(
    """
    import json, os, sys, trio
    from hive_trio.clients.harness import open_harness_channel

    async def main():
        fd = int(os.environ["HIVE_HARNESS_FD"])
        out = os.path.join(os.environ["HIVE_STATE_DIR"], "harness.json")
        async with open_harness_channel(fd) as channel:
            name = os.environ["HIVE_AGENT"]
            await channel.turn_started("t-" + name, [])
            await channel.turn_event("t-" + name, "text", text="hello from " + name)
            await channel.report_state(active_model="fake-model")
            with open(out + ".tmp", "w") as f:
                json.dump({"pid": os.getpid(), "fd": fd}, f)
            os.replace(out + ".tmp", out)
            await trio.sleep_forever()

    trio.run(main)
    """
)


def read_json(path: Path) -> dict[str, int] | None:
    try:
        data: dict[str, int] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return data


async def test_a_launched_harness_reports_for_its_own_agent_only(tmp_path: Path) -> None:
    script = tmp_path / "fake_harness.py"
    script.write_text(FAKE_HARNESS)
    command = f"exec {sys.executable} {script}"
    async with open_test_hive(lifecycle=True, agent_command=command) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("alpha")
        await coord.ops.spawn("beta")
        info = {}
        for name in ("alpha", "beta"):
            out = coord.paths.agent_notes(name) / "harness.json"
            info[name] = await eventually(
                partial(read_json, out), watch=[out.parent], within=20, what=f"{name} harness"
            )
        for name, other in (("alpha", "beta"), ("beta", "alpha")):
            entries = (await hive.host("transcript", name=name))["entries"]
            assert [e["kind"] for e in entries] == ["turn_started", "text"]
            assert {e["agent"] for e in entries} == {name}
            assert entries[1]["text"] == f"hello from {name}"
            assert all(other not in e["turn_id"] for e in entries)
        rows = {r["name"]: r for r in (await hive.host("agent_status"))["agent_statuses"]}
        assert rows["alpha"]["active_model"] == "fake-model"
        # The channel has no path: the child's fd is an anonymous socket, and reopening it through /proc
        # (what a same-uid process would try) fails with ENXIO.
        pid, fd = info["alpha"]["pid"], info["alpha"]["fd"]
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
        assert link.startswith("socket:[")
        with pytest.raises(OSError) as caught:
            os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR)
        assert caught.value.errno == errno.ENXIO
        assert not any(p.name.startswith("harness") for p in coord.paths.runtime_dir.rglob("*"))
        await coord.ops.stop("alpha")
        await coord.ops.stop("beta")
        # The session ended with its run.
        assert not coord.reports.harness_connected("alpha")


async def test_a_model_calling_a_harness_tool_on_mcp_sock_gets_unknown_tool(hive: InProcessHive) -> None:
    await hive.add_agent("alpha")
    async with hive.open_agent("alpha") as alpha:
        assert "turn_started" not in await alpha.list_tools()
        for tool in ("turn_started", "turn_finished", "report_state", "request_permission", "wait_control"):
            with pytest.raises(Exception, match="unknown tool"):
                await alpha.call(tool, turn_id="t", outcome="ok")
    rows = (await hive.host("agent_status"))["agent_statuses"]
    assert rows[0]["needs_login"] is False and rows[0]["active_model"] is None


async def test_the_harness_channel_offers_only_reports_and_names_no_one_else(hive: InProcessHive) -> None:
    await hive.add_agent("alpha")
    await hive.add_agent("beta")
    async with open_test_channel(hive.coordinator, "alpha") as channel:
        tools = [t.name for t in (await channel.session.list_tools()).tools]
        assert tools == [
            "turn_started",
            "turn_event",
            "turn_finished",
            "report_state",
            "request_permission",
            "wait_control",
        ]
        with pytest.raises(ToolError, match="cannot be set"):
            await channel._call("turn_started", {"turn_id": "t", "agent_name": "beta"})
        with pytest.raises(ToolError, match="unknown argument"):
            await channel._call("turn_started", {"turn_id": "t", "agent": "beta"})
        with pytest.raises(Exception, match="unknown tool 'send'"):
            await channel._call("send", {"to": "beta", "body": "hi"})
        await channel.turn_started("t1", [])
    assert (await hive.host("transcript", name="beta"))["entries"] == []
    assert len((await hive.host("transcript", name="alpha"))["entries"]) == 1


async def test_a_harness_that_sends_garbage_loses_only_its_channel(hive: InProcessHive) -> None:
    import socket

    await hive.add_agent("alpha")
    ours, theirs = socket.socketpair()
    run_ended = trio.CancelScope()  # never cancelled: the channel must end by itself
    served = trio.Event()

    async def serve() -> None:
        await hive.coordinator.reports.serve_run_channel("alpha", ours, run_ended)
        served.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
        with pytest.raises(trio.BrokenResourceError):
            # The daemon closes the channel once the line passes the frame limit, mid-write.
            await stream.send_all(b"x" * (2 * 1024 * 1024) + b"\n")
        with trio.fail_after(10):
            await served.wait()
        assert not hive.coordinator.reports.harness_connected("alpha")
        await stream.aclose()
    # The hive is fine: another channel for the agent works.
    async with open_test_channel(hive.coordinator, "alpha") as channel:
        await channel.turn_started("t2", [1])


async def test_harness_tools_return_structured_results_matching_their_schemas(hive: InProcessHive) -> None:
    import jsonschema

    await hive.add_agent("alpha")
    async with open_test_channel(hive.coordinator, "alpha") as channel, hive.open_agent("alpha") as alpha:
        tools = {t.name: t for t in (await channel.session.list_tools()).tools}
        agent_tools = {t.name: t for t in (await alpha.session.list_tools()).tools}
        reminded = await alpha.session.call_tool("remind", {"body": "later", "delay_seconds": 60})
        assert reminded.structured_content is not None
        jsonschema.validate(reminded.structured_content, agent_tools["remind"].output_schema)
        await hive.host("set_budget", name="alpha", daily_tokens=10**9)
        calls: list[tuple[str, dict[str, object]]] = [
            ("turn_started", {"turn_id": "t1", "message_ids": [1]}),
            ("turn_event", {"turn_id": "t1", "kind": "text", "text": "hi"}),
            ("turn_finished", {"turn_id": "t1", "outcome": "ok", "input_tokens": 3}),
            ("report_state", {"status_text": "idle"}),
            ("wait_control", {"wait_seconds": 0}),
        ]
        for name, arguments in calls:
            result = await channel.session.call_tool(name, arguments)
            assert not result.is_error, (name, result)
            assert result.structured_content is not None, name
            jsonschema.validate(result.structured_content, tools[name].output_schema)


async def test_the_harness_opens_the_real_channel_when_hive_harness_fd_is_set(hive: InProcessHive) -> None:
    import socket

    from hive_trio.agent.channel import open_channel_from_env
    from hive_trio.clients.harness import HarnessChannel

    await hive.add_agent("alpha")
    ours, theirs = socket.socketpair()
    run_ended = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hive.coordinator.reports.serve_run_channel, "alpha", ours, run_ended)
        os.set_inheritable(theirs.fileno(), True)  # as the child inherits it
        fd = theirs.detach()
        async with open_channel_from_env({"HIVE_HARNESS_FD": str(fd)}) as channel:
            assert isinstance(channel, HarnessChannel)
            assert not os.get_inheritable(fd)  # the CLI the harness starts never holds it
            await channel.turn_started("t-env", [])
        run_ended.cancel()
    entries = (await hive.host("transcript", name="alpha"))["entries"]
    assert [(e["kind"], e["turn_id"]) for e in entries] == [("turn_started", "t-env")]
