"""The MCP line transport against an in-memory stream pair (protocol logic only; real sockets elsewhere)."""

from __future__ import annotations

import json

import mcp_types as types
import trio
import trio.testing
from mcp.shared.message import SessionMessage

from hive_trio.mcp_transport import decode_line, encode, is_reply_error, open_mcp_streams


def test_decode_good_and_bad_lines() -> None:
    ok = decode_line(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert not is_reply_error(ok)
    parse = decode_line(b"garbage")
    assert isinstance(parse.message, types.JSONRPCError)
    assert parse.message.error.code == types.PARSE_ERROR and parse.message.id is None
    invalid = decode_line(b'{"id": 7, "hello": "world"}')
    assert isinstance(invalid.message, types.JSONRPCError)
    assert (invalid.message.error.code, invalid.message.id) == (types.INVALID_REQUEST, 7)
    assert is_reply_error(decode_line(b"[1, 2, 3]"))
    assert is_reply_error(decode_line(b"\xff\xfe"))


async def read_line(stream: trio.abc.ReceiveStream) -> dict[str, object]:
    buf = b""
    while not buf.endswith(b"\n"):
        buf += await stream.receive_some()
    data: dict[str, object] = json.loads(buf)
    return data


async def test_server_answers_garbage_and_passes_good_messages() -> None:
    client, server = trio.testing.memory_stream_pair()
    written: list[types.JSONRPCMessage] = []
    async with open_mcp_streams(server, role="server", max_frame=1000, on_written=written.append) as (read, write):
        await client.send_all(b'not json\n{"jsonrpc":"2.0","id":3,"method":"ping"}\n')
        reply = await read_line(client)
        assert reply["error"]["code"] == types.PARSE_ERROR  # type: ignore[index]
        incoming = await read.receive()
        assert isinstance(incoming, SessionMessage)
        assert isinstance(incoming.message, types.JSONRPCRequest) and incoming.message.method == "ping"
        await write.send(SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=3, result={})))
        assert (await read_line(client))["id"] == 3
        assert [getattr(m, "id", None) for m in written] == [None, 3]


async def test_oversize_line_closes_only_this_connection() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with open_mcp_streams(server, role="server", max_frame=64) as (read, _write):
        await client.send_all(b"x" * 100)
        reply = await read_line(client)
        assert "frame limit" in reply["error"]["message"]  # type: ignore[index]
        # The SDK side sees the end of input, so the session ends.
        async for _ in read:
            raise AssertionError("no message should arrive")


def test_encode_is_one_line() -> None:
    line = encode(types.JSONRPCResponse(jsonrpc="2.0", id=1, result={"text": "a\nb"}))
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
