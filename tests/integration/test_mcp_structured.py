"""MCP 2025-06-18 structured results, the not-initialized error, and reply order around a bad line,
over a real agent socket with raw JSON-RPC lines (what the SDK client would never send)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jsonschema
import mcp_types as types
import pytest
import trio
from mcp_support import RawLines

from hive_trio.records import OPERATOR
from hive_trio.testing import InProcessHive


@pytest.fixture
def hive_agents() -> Sequence[str]:
    return ("alpha", "beta")


class Raw(RawLines):
    def __init__(self, stream: trio.SocketStream) -> None:
        super().__init__(stream, read_timeout=10)
        self.ids = 100

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        self.ids += 1
        params = {"name": tool, "arguments": arguments}
        await self.send({"jsonrpc": "2.0", "id": self.ids, "method": "tools/call", "params": params})
        reply = await self.read()
        assert reply["id"] == self.ids, reply
        result: dict[str, Any] = reply["result"]
        return result


async def open_raw(hive: InProcessHive, name: str) -> Raw:
    return Raw(await trio.open_unix_socket(str(hive.socket_path(name))))


async def test_every_tool_declares_an_output_schema_its_structured_results_match(hive: InProcessHive) -> None:
    raw = await open_raw(hive, "alpha")
    await raw.handshake()
    await raw.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    tools = {t["name"]: t for t in (await raw.read())["result"]["tools"]}
    for tool in tools.values():
        jsonschema.Draft202012Validator.check_schema(tool["outputSchema"])
        assert tool["outputSchema"]["type"] == "object"
    await hive.coordinator.send("beta", "alpha", "for the structured recv")
    asked = await raw.call("ask", question="ok?", options=["yes", "no"])
    calls: list[tuple[str, dict[str, Any]]] = [
        ("send", {"to": "beta", "body": "hi"}),
        ("recv", {"max": 8}),
        ("ack_turn", {}),
        ("requeue_inflight", {}),
        ("status", {}),
        ("recent", {"limit": 5}),
        ("set_status", {"text": "testing"}),
        ("whoami", {}),
        ("list_agents", {}),
    ]
    seen = {"ask": asked}
    for name, arguments in calls:
        seen[name] = await raw.call(name, **arguments)
    for name, result in seen.items():
        assert result.get("isError") is not True, (name, result)
        structured = result["structuredContent"]
        # The JSON text stays for clients from before 2025-06-18, and says the same.
        assert json.loads(result["content"][0]["text"]) == structured, name
        jsonschema.validate(structured, tools[name]["outputSchema"])
    assert seen["recv"]["structuredContent"]["messages"][-1]["body"] == "for the structured recv"
    # An error result is text only: there is no data to structure.
    failed = await raw.call("send", to="nobody", body="x")
    assert failed["isError"] is True and "structuredContent" not in failed


async def test_a_call_before_initialize_says_the_session_is_not_initialized(hive: InProcessHive) -> None:
    raw = await open_raw(hive, "alpha")
    await raw.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    error = (await raw.read())["error"]
    assert error["code"] == types.INVALID_PARAMS
    assert error["message"].startswith("not initialized: send 'initialize'") and "'tools/list'" in error["message"]
    await raw.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami"}})
    assert "not initialized" in (await raw.read())["error"]["message"]
    # ping is allowed before the handshake; an unknown method is still "not found".
    await raw.send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
    assert (await raw.read()) == {"jsonrpc": "2.0", "id": 3, "result": {}}
    await raw.send({"jsonrpc": "2.0", "id": 4, "method": "no/such"})
    assert (await raw.read())["error"]["code"] == types.METHOD_NOT_FOUND
    await raw.handshake()
    assert (await raw.call("whoami"))["structuredContent"] == {"name": "alpha", "role": "agent"}


async def test_a_bad_line_is_answered_after_the_requests_before_it(hive: InProcessHive) -> None:
    raw = await open_raw(hive, "alpha")
    await raw.handshake()
    # One write: a recv that waits for a message, a garbage line, then a quick call.
    recv = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "recv", "arguments": {"wait_seconds": 5}},
    }
    whoami = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
    await raw.send(json.dumps(recv).encode() + b"\nnot json at all\n" + json.dumps(whoami).encode() + b"\n")
    # The call after the bad line may finish first (requests run concurrently, as JSON-RPC allows);
    # the bad line's error must not overtake the recv read before it.
    first = await raw.read()
    assert first.get("id") == 2, first
    with trio.move_on_after(0.3):
        early = await raw.read()
        pytest.fail(f"the parse error overtook the pending recv: {early}")
    await hive.coordinator.send(OPERATOR, "alpha", "now")
    replies = [await raw.read(), await raw.read()]
    assert replies[0]["id"] == 1 and replies[0]["result"]["structuredContent"]["messages"][0]["body"] == "now"
    assert replies[1]["id"] is None and replies[1]["error"]["code"] == types.PARSE_ERROR


async def test_a_2026_client_opens_without_initialize_as_claude_code_does(hive: InProcessHive) -> None:
    # Claude Code 2.1.3xx probes with `server/discover` in the 2026-07-28 envelope; that era has no handshake.
    raw = await open_raw(hive, "alpha")
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "claude-code", "version": "2.1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    await raw.send({"jsonrpc": "2.0", "id": "probe", "method": "server/discover", "params": {"_meta": meta}})
    reply = await raw.read()
    assert "error" not in reply, reply
