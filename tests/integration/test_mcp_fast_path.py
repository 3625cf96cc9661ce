"""The lean MCP path over real unix sockets: what the SDK still owns, what the middleware answers, and
that a client which stops reading stalls only its own connection."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import mcp_types as types
import pytest
import trio
from mcp_support import RawLines

from hive_trio.sockets.mcp.transport import RECEIVE_CHUNK
from hive_trio.testing import InProcessHive

ENVELOPE = {types.PROTOCOL_VERSION_META_KEY: "2026-07-28"}


@pytest.fixture
def hive_agents() -> Sequence[str]:
    return ("alpha", "beta")


class Raw(RawLines):
    async def call(self, request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        return await self.read()


async def open_raw(hive: InProcessHive, name: str, *, handshake: bool = True) -> Raw:
    raw = Raw(await trio.open_unix_socket(str(hive.socket_path(name))))
    if handshake:
        await raw.handshake()
    return raw


async def test_a_tool_result_has_the_sdk_wire_shape(hive: InProcessHive) -> None:
    raw = await open_raw(hive, "alpha")
    reply = await raw.call(1, "tools/call", {"name": "whoami", "arguments": {}})
    assert reply["id"] == 1 and reply["result"]["isError"] is False
    [content] = reply["result"]["content"]
    assert content["type"] == "text" and json.loads(content["text"])["name"] == "alpha"
    refused = await raw.call(2, "tools/call", {"name": "send", "arguments": {"to": "ghost", "body": "x"}})
    assert refused["result"]["isError"] is True and "ghost" in refused["result"]["content"][0]["text"]
    unknown = await raw.call(3, "tools/call", {"name": "no_such_tool", "arguments": {}})
    assert unknown["error"]["code"] == types.INVALID_PARAMS


async def test_malformed_tool_calls_get_the_sdks_own_errors_and_the_connection_goes_on(hive: InProcessHive) -> None:
    raw = await open_raw(hive, "alpha")
    for request_id, params in enumerate(
        [{"arguments": {}}, {"name": 7, "arguments": {}}, {"name": "whoami", "arguments": [1, 2]}], start=1
    ):
        reply = await raw.call(request_id, "tools/call", params)
        assert reply["id"] == request_id and reply["error"]["code"] == types.INVALID_PARAMS
    assert "error" in await raw.call(9, "tools/call")  # no params at all
    assert (await raw.call(10, "ping"))["result"] == {}
    tools = (await raw.call(11, "tools/list", {}))["result"]["tools"]
    assert "send" in {t["name"] for t in tools}


async def test_the_sdk_gate_still_refuses_a_tool_call_before_initialize(hive: InProcessHive) -> None:
    raw = await open_raw(hive, "alpha", handshake=False)
    early = await raw.call(1, "tools/call", {"name": "whoami", "arguments": {}})
    assert early["error"]["code"] == types.INVALID_PARAMS
    await raw.handshake()
    assert (await raw.call(2, "tools/call", {"name": "whoami", "arguments": {}}))["result"]["isError"] is False


async def test_an_enveloped_request_on_a_handshake_connection_is_refused(hive: InProcessHive) -> None:
    raw = await open_raw(hive, "alpha")
    reply = await raw.call(1, "tools/call", {"name": "whoami", "arguments": {}, "_meta": ENVELOPE})
    assert reply["error"]["code"] == types.INVALID_REQUEST and "handshake protocol era" in reply["error"]["message"]
    assert (await raw.call(2, "ping"))["result"] == {}


async def test_a_client_opening_in_the_2026_envelope_goes_to_the_sdks_era_router(hive: InProcessHive) -> None:
    raw = await open_raw(hive, "alpha", handshake=False)
    envelope = {**ENVELOPE, "io.modelcontextprotocol/clientCapabilities": {}}
    reply = await raw.call(1, "tools/list", {"_meta": envelope})
    # The SDK's modern loop takes it (no handshake in that era), not our handshake-era refusal. (Whether
    # it is then served is `InitializeFirst`'s call, which today asks for a handshake in every era.)
    assert reply["id"] == 1, reply
    assert "handshake protocol era" not in json.dumps(reply), reply
    assert "result" in reply or "not initialized" in reply["error"]["message"], reply


async def test_a_client_that_stops_reading_stalls_only_its_own_connection(hive: InProcessHive) -> None:
    async with hive.open_agent("beta") as beta:
        for i in range(4):
            await beta.call("send", to="alpha", body=f"{i}" + "x" * 60_000)
    hog = await open_raw(hive, "alpha")
    # Pipelined peeks at big replies, never read: the daemon's writes to it fill the kernel buffers.
    await hog.stream.send_all(
        b"".join(
            json.dumps(
                {"jsonrpc": "2.0", "id": 100 + i, "method": "tools/call", "params": {"name": "status", "arguments": {}}}
            ).encode()
            + b"\n"
            for i in range(64)
        )
        + b"".join(
            json.dumps(
                {"jsonrpc": "2.0", "id": 500 + i, "method": "tools/list", "params": {}},
            ).encode()
            + b"\n"
            for i in range(400)
        )
    )
    other = await open_raw(hive, "alpha")
    with trio.fail_after(10):
        for request_id in range(1, 50):
            reply = await other.call(request_id, "tools/call", {"name": "whoami", "arguments": {}})
            assert reply["result"]["isError"] is False
    with trio.fail_after(30):  # the hog's own replies are all still there, each once (in completion order)
        ids = sorted([(await hog.read())["id"] for _ in range(464)])
    assert ids == [*range(100, 164), *range(500, 900)]


async def test_a_bad_line_behind_a_parked_call_does_not_stop_the_reading(hive: InProcessHive) -> None:
    raw = await open_raw(hive, "alpha")
    recv = {"name": "recv", "arguments": {"wait_seconds": 30}}
    await raw.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": recv})
    await raw.stream.send_all(b"not json\n")
    # Its answer waits for the parked call; the cancellation behind it must still be read and obeyed.
    await raw.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
    await raw.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
    with trio.fail_after(10):
        replies = [await raw.read(), await raw.read()]
    by_id = {r.get("id"): r for r in replies}
    assert by_id[2]["result"] == {}
    assert by_id[None]["error"]["code"] == types.PARSE_ERROR
    assert 1 not in by_id  # a cancelled request is never answered


async def test_a_pipeline_longer_than_one_read_is_answered_in_full(
    hive: InProcessHive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over 64 KiB of requests in one write: the reader's read-first path (after a full chunk) and its
    wait-first path both run, and every request gets exactly one reply."""
    raw = await open_raw(hive, "alpha")
    reads: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        reads.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting_read)
    count = 3000
    lines = b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % (1000 + i) for i in range(count))
    assert len(lines) > 2 * 65536
    seen: list[int] = []

    async def read_all() -> None:
        while len(seen) < count:
            reply = await raw.read()
            assert reply["result"] == {}
            seen.append(reply["id"])

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await raw.stream.send_all(lines)
    assert sorted(seen) == list(range(1000, 1000 + count))
    assert RECEIVE_CHUNK in reads and any(0 < n < RECEIVE_CHUNK for n in reads)


async def test_a_connection_reset_by_its_peer_ends_only_that_connection(hive: InProcessHive) -> None:
    import socket
    import struct

    for _ in range(3):
        doomed = await open_raw(hive, "alpha")
        await doomed.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami"}})
        # SO_LINGER 0: close sends RST, so the daemon's read (or write) fails with ECONNRESET.
        doomed.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        doomed.stream.socket.close()
    other = await open_raw(hive, "alpha")
    with trio.fail_after(10):
        assert (await other.call(2, "tools/call", {"name": "whoami", "arguments": {}}))["result"]["isError"] is False
