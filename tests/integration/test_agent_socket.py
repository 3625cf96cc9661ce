"""Agent and manager MCP sockets, end to end: a real in-process hive (via `hive_trio.testing`), real unix
sockets, and the official MCP SDK client, as agents use them."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Sequence
from typing import Any

import mcp_types as types
import pytest
import trio
import trio.testing
from mcp.shared.exceptions import MCPError
from mcp_support import RawLines

from hive_trio.clients.mcp import AgentClient, ToolError
from hive_trio.records import MANAGER_AGENT
from hive_trio.sockets.unix_listener import SocketInUse
from hive_trio.testing import InProcessHive, open_test_hive


@pytest.fixture
def hive_agents() -> Sequence[str]:
    return ("alpha", "beta")


async def bodies(client: AgentClient, **args: Any) -> list[str]:
    return [m["body"] for m in (await client.call("recv", **args))["messages"]]


async def open_raw(hive: InProcessHive, name: str) -> RawLines:
    return RawLines(await trio.open_unix_socket(str(hive.socket_path(name))))


# ------------------------------------------------------------------------------------ delivery


async def test_a_message_is_delivered_exactly_once(hive: InProcessHive) -> None:
    async with hive.open_agent("alpha") as alpha, hive.open_agent("beta") as beta:
        sent = await alpha.call("send", to="beta", body="hello beta")
        got = (await beta.call("recv"))["messages"]
        assert [(m["id"], m["from"], m["body"], m["redelivered"]) for m in got] == [
            (sent["id"], "alpha", "hello beta", False)
        ]
        assert await beta.call("recv") == {"messages": []}
        assert (await beta.call("status"))["pending_messages"] == 0


async def test_unacked_comes_back_redelivered_and_acked_never_does(hive: InProcessHive) -> None:
    async with hive.open_agent("alpha") as alpha, hive.open_agent("beta") as beta:
        await alpha.call("send", to="beta", body="one")
        assert await bodies(beta) == ["one"]
        assert await beta.call("requeue_inflight") == {"requeued": 1}
        again = (await beta.call("recv"))["messages"]
        assert [(m["body"], m["redelivered"]) for m in again] == [("one", True)]
        assert await beta.call("ack_turn") == {"acked": 1}
        await alpha.call("send", to="beta", body="two")
        assert await bodies(beta) == ["two"]
        await beta.call("ack_turn")
        assert await beta.call("requeue_inflight") == {"requeued": 0}
        assert await beta.call("recv") == {"messages": []}


async def test_recv_takes_up_to_max_in_send_order(hive: InProcessHive) -> None:
    async with hive.open_agent("alpha") as alpha, hive.open_agent("beta") as beta:
        for i in range(40):
            await alpha.call("send", to="beta", body=f"m{i}")
        assert await bodies(beta, max=3) == ["m0", "m1", "m2"]
        assert len(await bodies(beta, max=1000)) == 32  # capped
        recent = (await beta.call("recent", limit=2))["messages"]
        assert [(m["body"], m["to"]) for m in recent] == [("m38", "beta"), ("m39", "beta")]


async def test_send_to_an_unknown_agent_is_a_tool_error(hive: InProcessHive) -> None:
    async with hive.open_agent("alpha") as alpha:
        with pytest.raises(ToolError, match="unknown agent 'gamma'"):
            await alpha.call("send", to="gamma", body="hello?")
        with pytest.raises(ToolError, match="never receives"):
            await alpha.call("send", to="system", body="hello?")
        result = await alpha.session.call_tool("send", {"to": "gamma", "body": "x"})
        assert result.is_error


async def test_a_spoofed_sender_has_no_effect(hive: InProcessHive) -> None:
    async with hive.open_agent("alpha") as alpha, hive.open_agent("beta") as beta:
        for key in ("from", "sender"):
            with pytest.raises(ToolError, match="this socket is your identity"):
                await alpha.call("send", to="beta", body="from beta, honest", **{key: "beta"})
        assert await beta.call("recv") == {"messages": []}  # nothing was sent
        await alpha.call("send", to="beta", body="plain")
        assert [m["from"] for m in (await beta.call("recv"))["messages"]] == ["alpha"]
        assert await alpha.call("whoami") == {"name": "alpha", "role": "agent"}


async def test_broadcast_reaches_every_other_agent_with_the_hint(hive: InProcessHive) -> None:
    await hive.add_agent("gamma")
    async with hive.open_agent("alpha") as alpha, hive.open_agent("beta") as beta, hive.open_agent("gamma") as gamma:
        result = await alpha.call("send", to="*", body="standup")
        assert len(result["ids"]) == 2
        for client in (beta, gamma):
            (body,) = await bodies(client)
            assert body.startswith("standup") and "broadcast" in body
        assert await alpha.call("recv") == {"messages": []}


async def test_recv_wakes_on_a_new_message_without_polling(
    hive: InProcessHive, hive_autojump_clock: trio.testing.MockClock
) -> None:
    async with hive.open_agent("alpha") as alpha, hive.open_agent("beta") as beta:
        woke_at: list[float] = []

        async def wait_for_mail() -> None:
            got = await bodies(beta, wait_seconds=120)
            woke_at.append(trio.current_time())
            assert got == ["ping"]

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_mail)
            await trio.sleep(30)
            assert woke_at == []
            await alpha.call("send", to="beta", body="ping")
        assert 30 <= woke_at[0] - start < 31
        # With nothing coming, it parks for the whole wait and returns empty.
        before = trio.current_time()
        assert await bodies(beta, wait_seconds=45) == []
        assert 45 <= trio.current_time() - before < 46


async def test_a_recv_the_client_gives_up_on_does_not_eat_later_mail(
    hive: InProcessHive, hive_autojump_clock: trio.testing.MockClock
) -> None:
    async with hive.open_agent("alpha") as alpha, hive.open_agent("beta") as beta:
        # The SDK sends notifications/cancelled when its own timeout fires; the parked call ends.
        with pytest.raises(MCPError, match="timed out"):
            await beta.session.call_tool("recv", {"wait_seconds": 100}, read_timeout_seconds=5)
        await alpha.call("send", to="beta", body="after the timeout")
        got = (await beta.call("recv", wait_seconds=10))["messages"]
        assert [(m["body"], m["redelivered"]) for m in got] == [("after the timeout", False)]


async def test_a_recv_cancelled_while_delivering_puts_its_messages_back_at_once(
    hive: InProcessHive, monkeypatch: pytest.MonkeyPatch
) -> None:
    [message] = await hive.coordinator.send("alpha", "beta", "must not be acked unseen")
    broker = hive.coordinator._broker
    deliver = broker.deliver
    delivering, proceed, delivered = trio.Event(), trio.Event(), trio.Event()

    async def held_deliver(recipient: str, *, limit: int, max_bytes: int | None = None) -> Any:
        delivering.set()
        await proceed.wait()
        try:
            return await deliver(recipient, limit=limit, max_bytes=max_bytes)
        finally:
            delivered.set()

    release = broker.release
    released = trio.Event()

    async def watched_release(ids: Sequence[int]) -> int:
        try:
            return await release(ids)
        finally:
            released.set()

    monkeypatch.setattr(broker, "deliver", held_deliver)
    monkeypatch.setattr(broker, "release", watched_release)
    raw = await open_raw(hive, "beta")
    await raw.handshake()
    recv = {"name": "recv", "arguments": {"wait_seconds": 30}}
    await raw.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": recv})
    await delivering.wait()
    # The client gives up (as the SDK does on its own timeout) while the rows are being stamped delivered.
    await raw.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
    await raw.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
    assert (await raw.read())["id"] == 2  # the cancel has been read and applied
    monkeypatch.setattr(broker, "deliver", deliver)
    proceed.set()
    await delivered.wait()
    # Same connection, still open: the cancelled call's messages go back at once, not at disconnect.
    with trio.fail_after(5):
        await released.wait()
    assert await hive.coordinator.recent_messages("beta", limit=1) == [message]  # back, as it was sent
    ack = {"name": "ack_turn", "arguments": {}}
    await raw.send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": ack})
    reply = await raw.read()
    assert (reply["id"], json.loads(reply["result"]["content"][0]["text"])) == (3, {"acked": 0})
    await raw.stream.aclose()
    async with hive.open_agent("beta") as beta:
        assert await bodies(beta, wait_seconds=10) == ["must not be acked unseen"]


async def test_questions_between_agents_arrive_as_helper_events(hive: InProcessHive) -> None:
    async with hive.open_agent("alpha") as alpha, hive.open_agent("beta") as beta:
        asked = await alpha.call("ask", question="tabs or spaces?", options=["tabs", "spaces"], to="beta")
        (event,) = [json.loads(b) for b in await bodies(beta)]
        assert event["event"] == "question_asked" and event["id"] == asked["question_id"]
        with pytest.raises(ToolError, match="was asked of 'beta', not 'alpha'"):
            await alpha.call("answer", question_id=asked["question_id"], answer="tabs")
        assert (await beta.call("answer", question_id=asked["question_id"], answer="spaces"))["answer"] == "spaces"
        (answer,) = [json.loads(b) for b in await bodies(alpha)]
        assert (answer["event"], answer["answer"], answer["answerer"]) == ("question_answered", "spaces", "beta")
        operator_q = await alpha.call("ask", question="ship it?")
        open_ids = [q["id"] for q in (await hive.host("questions"))["questions"]]
        assert operator_q["question_id"] in open_ids


async def test_status_text_and_list_agents(hive: InProcessHive) -> None:
    async with hive.open_agent("alpha") as alpha:
        assert await alpha.call("set_status", text="refactoring the broker") == {
            "status_text": "refactoring the broker"
        }
        rows = {r["name"]: r for r in (await hive.host("agent_status"))["agent_statuses"]}
        assert rows["alpha"]["status_text"] == "refactoring the broker"
        assert await alpha.call("list_agents") == {"agents": ["alpha", "beta"]}
        await hive.add_agent("gamma")
        assert await alpha.call("list_agents") == {"agents": ["alpha", "beta", "gamma"]}


# ------------------------------------------------------------------------------------ the manager


async def test_the_manager_socket_has_the_manager_tools(hive: InProcessHive) -> None:
    async with hive.open_manager() as manager, hive.open_agent("alpha") as alpha:
        assert {"request_spawn", "request_apply_commit", "kill", "start", "restart", "update"} <= set(
            await manager.list_tools()
        )
        assert "kill" not in await alpha.list_tools()
        assert await manager.call("whoami") == {"name": MANAGER_AGENT, "role": "manager"}
        with pytest.raises(ToolError, match="without a lifecycle backend"):
            await manager.call("restart", name="alpha")
        with pytest.raises(ToolError, match="cannot target itself"):
            await manager.call("kill", name="manager")
        with pytest.raises(MCPError, match="'kill' is a manager tool"):
            await alpha.call("kill", name="beta")
        await alpha.call("send", to="manager", body="need a reviewer")
        assert [m["from"] for m in (await manager.call("recv"))["messages"]] == ["alpha"]


# ------------------------------------------------------------------------------------ bad input


async def test_malformed_lines_get_json_rpc_errors_and_the_connection_lives(hive: InProcessHive) -> None:
    raw = await open_raw(hive, "alpha")
    await raw.handshake()
    await raw.send(b"this is not json\n")
    assert (await raw.read())["error"]["code"] == types.PARSE_ERROR
    await raw.send(b"\xff\xfe\n")
    assert (await raw.read())["error"]["code"] == types.PARSE_ERROR
    await raw.send(b"[" * 50_000 + b"]" * 50_000 + b"\n")
    assert (await raw.read())["error"]["code"] == types.PARSE_ERROR
    await raw.send({"id": 5, "hello": "world"})
    assert (await raw.read())["error"] == {
        "code": types.INVALID_REQUEST,
        "message": "invalid request: not a JSON-RPC 2.0 message",
    }
    await raw.send({"jsonrpc": "2.0", "id": 6, "method": "no/such/method"})
    assert (await raw.read())["error"]["code"] == types.METHOD_NOT_FOUND
    await raw.send({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "send", "arguments": "x"}})
    assert (await raw.read())["error"]["code"] == types.INVALID_PARAMS
    await raw.send({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "teleport"}})
    assert "unknown tool 'teleport'" in (await raw.read())["error"]["message"]
    await raw.send({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "whoami"}})
    reply = await raw.read()
    assert json.loads(reply["result"]["content"][0]["text"]) == {"name": "alpha", "role": "agent"}
    await raw.send({"jsonrpc": "2.0", "id": 10, "method": "ping"})
    assert (await raw.read()) == {"jsonrpc": "2.0", "id": 10, "result": {}}


async def test_an_oversized_line_closes_only_that_connection() -> None:
    async with open_test_hive(agents=["alpha"], max_frame_bytes=4096) as hive, hive.open_agent("alpha") as bystander:
        raw = await open_raw(hive, "alpha")
        await raw.handshake()
        await raw.send(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"x" * 8000 + b'"}}\n')
        assert "frame limit" in (await raw.read())["error"]["message"]
        with pytest.raises((EOFError, trio.BrokenResourceError)):
            await raw.read()
        assert await bystander.call("whoami") == {"name": "alpha", "role": "agent"}


HOSTILE_NAMES = ["../x", "A", "", "a" * 200, "a/b", "manager", "system", "operator", "a\x00b", "../../etc", "."]
# Names that are fine as a recipient or a question's target, though never an agent's name.
RECIPIENTS = {"manager", "operator"}


async def test_hostile_names_over_mcp_are_refused_and_build_no_path(hive: InProcessHive) -> None:
    before = sorted(str(p) for p in hive.directory.rglob("*"))
    refusal = r"agent name|reserved|never receives|cannot target itself|cannot ask itself"
    async with hive.open_agent("alpha") as alpha, hive.open_manager() as manager:
        for name in HOSTILE_NAMES:
            for tool, args in [
                ("send", {"to": name, "body": "x"}),
                ("ask", {"question": "q", "to": name}),
            ]:
                if name in RECIPIENTS:
                    await alpha.call(tool, **args)  # the manager and the operator are real recipients
                    continue
                with pytest.raises(ToolError, match=refusal):
                    await alpha.call(tool, **args)
            for tool in ("start", "kill", "restart", "update"):
                with pytest.raises(ToolError, match=refusal):
                    await manager.call(tool, name=name)
            with pytest.raises(ToolError, match=refusal):
                await manager.call("request_spawn", name=name, description="x")
            with pytest.raises(ToolError, match=refusal):
                await manager.call("request_apply_commit", agent=name, commit_ref="abcdef1")
    # Everything still answers, and nothing was created anywhere.
    assert [r["name"] for r in (await hive.host("agent_status"))["agent_statuses"]] == ["alpha", "beta"]
    async with hive.open_agent("alpha") as alpha:
        assert await alpha.call("whoami") == {"name": "alpha", "role": "agent"}
    after = sorted(str(p) for p in hive.directory.rglob("*") if not p.name.startswith("hive.db"))
    assert [p for p in after if p not in before] == []
    assert sorted(os.listdir(hive.directory)) == ["run", "state"]


async def test_a_crashing_tool_is_logged_and_contained(hive: InProcessHive, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(name: str) -> int:
        raise RuntimeError("disk on fire")

    hive.coordinator.inbox_depth = broken  # type: ignore[method-assign]
    async with hive.open_agent("alpha") as alpha:
        with pytest.raises(ToolError, match="internal error in the hive daemon while running 'status'"):
            await alpha.call("status")
        assert await alpha.call("whoami") == {"name": "alpha", "role": "agent"}
    assert "disk on fire" in caplog.text


# ---------------------------------------------------------------------------- registration and files


async def test_sockets_are_0660_and_re_registering_replaces_the_listener(hive: InProcessHive) -> None:
    path = hive.socket_path("alpha")
    first = os.stat(path)
    assert stat.S_ISSOCK(first.st_mode) and stat.S_IMODE(first.st_mode) == 0o660
    assert stat.S_IMODE(os.stat(hive.socket_path("manager")).st_mode) == 0o660
    async with hive.open_agent("alpha") as old:
        await hive.coordinator.register_agent("alpha")
        with pytest.raises(MCPError):
            await old.call("whoami")  # the old listener's connections went with it
    await trio.testing.wait_all_tasks_blocked()
    # The old server has exited, and did not unlink the fresh socket at the same path (the kernel may
    # even have given the new file the old inode number, so only "latest binding" tells them apart).
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    async with hive.open_agent("alpha") as fresh:
        assert await fresh.call("whoami") == {"name": "alpha", "role": "agent"}


async def test_unregistering_mid_recv_ends_the_call_and_leaves_nothing(
    hive: InProcessHive, hive_autojump_clock: trio.testing.MockClock
) -> None:
    coordinator = hive.coordinator

    def slots() -> int:
        return sum(t.name.endswith("_run_slot") for t in coordinator.root_nursery.child_tasks)

    assert slots() == 3  # the manager, alpha, beta
    path = hive.socket_path("beta")
    outcome: list[str] = []
    async with hive.open_agent("beta") as beta:

        async def park() -> None:
            try:
                await beta.call("recv", wait_seconds=170)
            except MCPError as exc:
                outcome.append(f"ended: {exc}")
            else:
                outcome.append("returned")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(park)
            await trio.sleep(10)  # virtual: everything is idle, so beta is parked in recv
            assert outcome == []
            coordinator.unregister_agent("beta")
        assert outcome and outcome[0].startswith("ended")
        assert trio.current_time() < 20  # ended at once, not at the recv deadline
    await trio.testing.wait_all_tasks_blocked()
    assert not path.exists()
    assert not coordinator.is_registered("beta")
    assert slots() == 2  # beta's slot, its socket server and its connections are gone


async def test_a_client_that_leaves_between_request_and_reply_loses_nothing(hive: InProcessHive) -> None:
    async with hive.open_agent("alpha") as alpha:
        for attempt in range(5):
            await alpha.call("send", to="beta", body=f"precious {attempt}")
            raw = await open_raw(hive, "beta")
            await raw.handshake()
            await raw.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "recv"}})
            await raw.stream.aclose()  # gone before the reply
        async with hive.open_agent("beta") as beta:
            got: list[str] = []
            while len(got) < 5:
                got += await bodies(beta, wait_seconds=10, max=32)
            assert sorted(got) == [f"precious {i}" for i in range(5)]


async def test_a_stale_socket_file_is_replaced_but_a_live_one_is_not(hive: InProcessHive) -> None:
    await hive.coordinator.record_spawn("gamma")
    path = hive.coordinator.paths.agent_socket("gamma")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o751)  # as a crashed daemon left it (an existing dir of another mode is refused)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a crashed daemon's leftover: the file exists, nobody listens
    await hive.coordinator.register_agent("gamma")
    async with hive.open_agent("gamma") as gamma:
        assert (await gamma.call("whoami"))["name"] == "gamma"
    hive.coordinator.unregister_agent("gamma")
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        live.bind(str(path))
        live.listen(1)
        with pytest.raises(SocketInUse, match="another process is already serving"):
            await hive.coordinator.register_agent("gamma")
        assert path.exists()  # not ours to remove
    finally:
        live.close()


async def test_a_crashing_connection_is_logged_and_the_socket_keeps_serving(
    hive: InProcessHive, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import hive_trio.sockets.mcp.server as agent_socket

    real_build = agent_socket.build_server
    crashes = [RuntimeError("a bug in connection setup")]

    def flaky_build(*args: Any) -> Any:
        if crashes:
            raise crashes.pop()
        return real_build(*args)

    async with hive.open_agent("beta") as bystander:  # connected before the fault: unaffected
        monkeypatch.setattr(agent_socket, "build_server", flaky_build)
        raw = await open_raw(hive, "alpha")
        with pytest.raises((EOFError, trio.BrokenResourceError)):
            await raw.handshake()  # this connection died (closed, or reset with our request unread)
        async with hive.open_agent("alpha") as alpha:  # the next one is served
            assert (await alpha.call("whoami"))["name"] == "alpha"
        assert (await bystander.call("whoami"))["name"] == "beta"
    assert "a connection to alpha's socket failed" in caplog.text and "a bug in connection setup" in caplog.text


async def test_an_error_in_the_client_block_comes_out_plain(hive: InProcessHive) -> None:
    with pytest.raises(ToolError, match="unknown agent 'ghost'"):
        async with hive.open_agent("alpha") as alpha:
            await alpha.call("send", to="ghost", body="x")
    with pytest.raises(KeyError):
        async with hive.open_agent("alpha"):
            raise KeyError("mine")


class _BlockError(Exception):
    pass


async def test_an_error_raised_in_the_client_block_comes_out_as_itself(hive: InProcessHive) -> None:
    # open_agent_client's nurseries would wrap it in an ExceptionGroup; the caller sees the error plain.
    with pytest.raises(_BlockError, match=r"^from the block$"):
        async with hive.open_agent("alpha") as client:
            await client.call("whoami")
            raise _BlockError("from the block")


# ------------------------------------------------------------------------------ hostile ids (issue 13)


@pytest.mark.parametrize("bad_id", [1.5, True, None, [], {}], ids=["1.5", "true", "null", "[]", "{}"])
async def test_a_request_whose_id_is_not_a_string_or_integer_gets_invalid_request(
    hive: InProcessHive, bad_id: Any
) -> None:
    """These once passed as notifications and got no reply at all."""
    raw = await open_raw(hive, "alpha")
    await raw.handshake()
    await raw.send({"jsonrpc": "2.0", "id": bad_id, "method": "ping"})
    with trio.fail_after(10):  # before issue 13 no reply ever came
        reply = await raw.read()
    assert reply["id"] is None and reply["error"]["code"] == -32600
    assert "id must be a string or an integer" in reply["error"]["message"]
    await raw.send({"jsonrpc": "2.0", "id": 9, "method": "ping"})  # and the connection carries on
    assert (await raw.read())["id"] == 9


async def test_a_lone_surrogate_in_a_tool_argument_is_refused_naming_the_field(hive: InProcessHive) -> None:
    raw = await open_raw(hive, "alpha")
    await raw.handshake()
    call = b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"send","arguments":'
    await raw.send(call + b'{"to":"beta","body":"x\\ud800"}}}\n')
    reply = await raw.read()
    assert reply["id"] == 4 and reply["result"]["isError"] is True, reply
    text = reply["result"]["content"][0]["text"]
    assert "not valid Unicode" in text and "body" in text, text
