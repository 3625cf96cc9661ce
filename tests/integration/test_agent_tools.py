"""The tool catalogue and the lease logic, without sockets: schemas, argument checks, exact lease
bookkeeping, and the cancellation windows where a delivered message could otherwise be lost."""

from __future__ import annotations

import json
import threading
from typing import Any

import attrs
import mcp_types as types
import pytest
import trio
import trio.testing

from hive_trio.core.coordinator import Coordinator
from hive_trio.errors import InvalidRequest
from hive_trio.records import AskArgs, Message, RecvArgs, SendArgs
from hive_trio.sockets.mcp.server import LeaseBook, serve_mcp_connection
from hive_trio.sockets.mcp.tools import AGENT_TOOLS, MANAGER_TOOLS, Toolbox, UnknownTool, input_schema, parse_arguments
from hive_trio.store.broker import deliver_tx


def test_every_tool_has_an_object_schema_naming_its_required_fields() -> None:
    for spec in AGENT_TOOLS + MANAGER_TOOLS:
        schema = spec.as_mcp().input_schema
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["properties"]) == {f.name for f in attrs.fields(spec.args)}
    assert input_schema(SendArgs)["required"] == ["to", "body"]
    recv = input_schema(RecvArgs)
    assert "required" not in recv
    assert recv["properties"]["wait_seconds"] == {
        "type": "number",
        "description": "seconds to park for the first message if the inbox is empty (at most 180)",
        "default": 0.0,
    }
    ask = input_schema(AskArgs)["properties"]
    assert ask["options"]["type"] == "array" and "default" not in ask["options"]
    assert ask["ttl_seconds"]["type"] == ["number", "null"]


def test_tool_names_follow_hyperhive() -> None:
    assert [s.name for s in AGENT_TOOLS] == [
        "send",
        "recv",
        "ack_turn",
        "requeue_inflight",
        "status",
        "recent",
        "ask",
        "answer",
        "set_status",
        "whoami",
        "list_agents",
    ]
    assert [s.name for s in MANAGER_TOOLS] == [
        "request_spawn",
        "request_apply_commit",
        "kill",
        "start",
        "restart",
        "update",
    ]


SEND = next(s for s in AGENT_TOOLS if s.name == "send")
RECV = next(s for s in AGENT_TOOLS if s.name == "recv")
ASK = next(s for s in AGENT_TOOLS if s.name == "ask")


@pytest.mark.parametrize(
    ("spec", "arguments", "reason"),
    [
        (SEND, {"to": "beta", "body": "x", "from": "beta"}, "'from' cannot be set; this socket is your identity"),
        (SEND, {"to": "beta", "body": "x", "sender": "beta"}, "'sender' cannot be set"),
        (SEND, {"to": "beta", "body": "x", "urgent": True}, "unknown argument(s) 'urgent' (allowed: body, to)"),
        (SEND, {"to": "beta"}, "required field missing @ $.body"),
        (SEND, {"to": 5, "body": "x"}, "expected a string, got an integer @ $.to"),
        (RECV, {"wait_seconds": "5"}, "expected a number, got a string @ $.wait_seconds"),
        (RECV, {"max": 2.5}, "expected an integer, got a number @ $.max"),
        (RECV, {"max": 10**30}, "expected an integer that fits in 64 bits @ $.max"),
        (ASK, {"question": "q", "options": "yes,no"}, "expected a list, got a string @ $.options"),
        (ASK, {"question": "q", "multi": 1}, "expected a boolean, got an integer @ $.multi"),
    ],
)
def test_bad_arguments_are_refused_by_name(spec: Any, arguments: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_arguments(spec, arguments)
    assert reason in str(caught.value)
    assert str(caught.value).startswith(spec.name + ":")


def test_absent_arguments_mean_the_defaults() -> None:
    assert parse_arguments(RECV, None) == RecvArgs(wait_seconds=0.0, max=1)


# ------------------------------------------------------------------------------------ the toolbox


def ignore(_: object) -> None:
    return None


async def test_toolbox_calls_are_made_as_the_socket_owner(coordinator: Coordinator) -> None:
    for name in ("alpha", "beta"):
        await coordinator.record_spawn(name)
    alpha, beta = Toolbox(coordinator, "alpha"), Toolbox(coordinator, "beta")
    sent = await alpha.call("send", {"to": "beta", "body": "hi"}, on_delivered=ignore)
    handed: list[list[Message]] = []
    got = await beta.call("recv", {"max": 5}, on_delivered=lambda ms: handed.append(list(ms)))
    assert got == {
        "messages": [
            {
                "id": sent["id"],
                "from": "alpha",
                "body": "hi",
                "sent_at": got["messages"][0]["sent_at"],
                "redelivered": False,
            }
        ]
    }
    assert [[m.id for m in batch] for batch in handed] == [[sent["id"]]]
    assert await alpha.call("whoami", {}, on_delivered=ignore) == {"name": "alpha", "role": "agent"}
    with pytest.raises(UnknownTool, match="'kill' is a manager tool"):
        await alpha.call("kill", {"name": "beta"}, on_delivered=ignore)
    with pytest.raises(UnknownTool, match="unknown tool 'fly'"):
        await alpha.call("fly", {}, on_delivered=ignore)


async def test_recv_argument_bounds(coordinator: Coordinator) -> None:
    await coordinator.record_spawn("alpha")
    alpha = Toolbox(coordinator, "alpha")
    with pytest.raises(InvalidRequest, match="wait_seconds must not be negative"):
        await alpha.call("recv", {"wait_seconds": -1}, on_delivered=ignore)
    with pytest.raises(InvalidRequest, match="max must be at least 1"):
        await alpha.call("recv", {"max": 0}, on_delivered=ignore)
    with pytest.raises(InvalidRequest, match="limit must be between 1 and 500"):
        await alpha.call("recent", {"limit": 501}, on_delivered=ignore)


async def test_manager_tools_refuse_to_target_the_manager(coordinator: Coordinator) -> None:
    manager = Toolbox(coordinator, "manager")
    for tool in ("kill", "start", "restart", "update", "request_spawn"):
        with pytest.raises(InvalidRequest, match=f"{tool}: the manager cannot target itself"):
            await manager.call(tool, {"name": "manager"}, on_delivered=ignore)
    with pytest.raises(InvalidRequest, match="commit_ref must be a 7-40 character hex sha"):
        await manager.call("request_apply_commit", {"agent": "alpha", "commit_ref": "main"}, on_delivered=ignore)
    with pytest.raises(InvalidRequest, match="set_status: the manager has no status row"):
        await manager.call("set_status", {"text": "hi"}, on_delivered=ignore)


# ------------------------------------------------------------------------------------ lease book


def message(mid: int) -> Message:
    return Message(id=mid, sender="a", recipient="b", body="x", sent_at=0.0, delivered_at=1.0)


def response(request_id: int | str) -> types.JSONRPCResponse:
    return types.JSONRPCResponse(jsonrpc="2.0", id=request_id, result={})


def test_lease_book_confirms_only_success_responses_by_id() -> None:
    book = LeaseBook()
    book.hold(7, [message(1), message(2)])
    book.hold("7", [message(3)])  # a string id is a different id
    book.hold(8, [])  # nothing handed out, nothing held
    assert len(book) == 3
    book.confirm(types.JSONRPCError(jsonrpc="2.0", id=7, error=types.ErrorData(code=-32000, message="closed")))
    assert len(book) == 3  # an error reply carried no messages
    book.confirm(response(7))
    assert [m.id for m in book.drain()] == [3]
    assert len(book) == 0


def test_lease_book_queues_a_reused_id() -> None:
    book = LeaseBook()
    book.hold(1, [message(1)])
    book.hold(1, [message(2)])
    book.confirm(response(1))
    assert [m.id for m in book.take(1)] == [2]
    assert book.take(1) == [] and book.take(None) == []


# ------------------------------------------------------------------------ cancellation windows


async def test_recv_cancelled_while_its_deliver_commits_still_returns_the_messages(coordinator: Coordinator) -> None:
    """The delivering UPDATE is running when the caller is cancelled: the list must still come back."""
    await coordinator.record_spawn("alpha")
    await coordinator.send("operator", "alpha", "precious")
    entered, release = threading.Event(), threading.Event()
    db = coordinator._db

    async def slow_deliver(recipient: str, *, limit: int, max_bytes: int | None = None) -> list[Message]:
        def work(conn: Any) -> list[Message]:
            entered.set()
            release.wait(10)
            return deliver_tx(conn, recipient=recipient, limit=limit, now=1.0)

        return await db.write(work)

    coordinator._broker.deliver = slow_deliver  # type: ignore[method-assign]
    got: list[Message] = []
    with trio.CancelScope() as scope:

        async def cancel_once_committing() -> None:
            await trio.to_thread.run_sync(entered.wait, 10)
            scope.cancel()
            release.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_once_committing)
            got.extend(await coordinator.recv("alpha", limit=5))
            await trio.sleep_forever()  # the cancellation lands here, after the list was handed over
    assert [m.body for m in got] == ["precious"]


async def test_a_reply_that_cannot_be_written_puts_its_messages_back(coordinator: Coordinator) -> None:
    """Deterministic: the socket accepts every write except the one carrying the recv reply."""
    await coordinator.record_spawn("alpha")
    sent = (await coordinator.send("operator", "alpha", "keep me"))[0]
    client_to_server = trio.testing.MemoryReceiveStream()
    server_to_client = trio.testing.MemorySendStream()
    written: list[dict[str, Any]] = []

    async def send_hook() -> None:
        data = server_to_client.get_data_nowait()
        for line in data.splitlines():
            reply = json.loads(line)
            if reply.get("id") == 3:
                client_to_server.put_eof()  # the agent is gone: no more input either
                raise trio.BrokenResourceError("the agent went away mid-reply")
            written.append(reply)

    server_to_client.send_all_hook = send_hook
    stream = trio.StapledStream(server_to_client, client_to_server)
    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "recv", "arguments": {"max": 5}}},
    ]
    for request in requests:
        client_to_server.put_data(json.dumps(request).encode() + b"\n")
    await serve_mcp_connection(Toolbox(coordinator, "alpha"), stream, max_frame=1 << 20)
    assert [r["id"] for r in written] == [1]
    [row] = await coordinator.recent_messages("alpha", limit=1)
    assert row.id == sent.id and row.delivered_at is None and not row.redelivered
    assert await coordinator.inbox_depth("alpha") == 1
