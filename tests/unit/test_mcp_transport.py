"""The MCP line transport against an in-memory stream pair (protocol logic only; real sockets elsewhere)."""

from __future__ import annotations

import json

import mcp_types as types
import trio
import trio.testing
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from hive_trio.sockets.mcp.transport import (
    RequestWindow,
    Undecodable,
    decode_line,
    decode_message,
    encode,
    is_reply_error,
    open_mcp_streams,
)


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


async def test_a_server_stops_reading_while_its_window_of_requests_is_full(autojump_clock: trio.abc.Clock) -> None:
    client, server = trio.testing.memory_stream_pair()
    lines = b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % i for i in range(10))
    async with open_mcp_streams(server, role="server", max_frame=1000, max_in_flight=3) as (read, write):
        await client.send_all(lines)
        taken = [await read.receive() for _ in range(3)]
        with trio.move_on_after(5) as idle:
            await read.receive()  # a fourth is not read while three wait for replies
        assert idle.cancelled_caught
        assert [m.message.id for m in taken if isinstance(m, SessionMessage)] == [0, 1, 2]  # type: ignore[union-attr]
        # A reply written frees one slot; a request the SDK settles unanswered (cancelled) frees another.
        await write.send(SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=0, result={})))
        fourth = await read.receive()
        assert isinstance(fourth, SessionMessage) and fourth.message.id == 3  # type: ignore[union-attr]
        metadata = taken[1].metadata  # type: ignore[union-attr]
        assert metadata is not None and metadata.on_request_unanswered is not None  # type: ignore[union-attr]
        await metadata.on_request_unanswered()  # type: ignore[union-attr]
        fifth = await read.receive()
        assert isinstance(fifth, SessionMessage) and fifth.message.id == 4  # type: ignore[union-attr]
        assert (await read_line(client))["id"] == 0


async def test_the_request_window_counts_reused_ids_and_ignores_strangers() -> None:
    window = RequestWindow(4)
    await window.admit(7)
    await window.admit(7)
    window.settle(99)  # not ours: an error we wrote for an undecodable line, say
    window.settle(None)
    assert len(window) == 2
    window.settle_reply(types.JSONRPCError(jsonrpc="2.0", id=7, error=types.ErrorData(code=0, message="x")))
    assert len(window) == 1
    window.settle(7)
    window.settle(7)  # a second reply for one request frees nothing more
    assert len(window) == 0


def test_a_lone_surrogate_is_still_encoded_as_one_json_line() -> None:
    # A peer's "\ud800" escape decodes to a lone surrogate, which has no UTF-8 form; echoing its id back
    # used to crash the writer and close the connection (found by tests/integration/test_fuzz_sockets.py).
    line = encode(
        types.JSONRPCError(jsonrpc="2.0", id="\ud800", error=types.ErrorData(code=types.INVALID_REQUEST, message="x"))
    )
    assert line.count(b"\n") == 1 and json.loads(line)["id"] == "\ud800"


LINES = [
    b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":"a-\\u00e9","method":"tools/call","params":{"name":"send","arguments":{"to":"b"}}}',
    b'{"id":9,"jsonrpc":"2.0","method":"tools/list","params":{"_meta":{"progressToken":1}}}',
    b'{"jsonrpc":"2.0","id":1.0,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":true,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":null,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":[1],"method":"ping"}',
    b'{"jsonrpc":"1.0","id":1,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}',
    b'{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}',
    b'{"jsonrpc":"2.0","id":1,"result":{}}',
    b'{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}',
    b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}',
    b'{"jsonrpc":"2.0","method":"n","params":{"id":3}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send","arguments":{"body":"\\ud800"}}}',
    b'{"jsonrpc":"2.0","id":1,"method":7}',
    b'{"id": 7, "hello": "world"}',
]


def test_the_request_fast_path_decodes_exactly_as_the_sdks_union() -> None:
    taken = 0
    for line in LINES:
        try:
            fast = types.JSONRPCRequest.model_validate_json(line, by_name=False)
        except ValidationError:
            continue  # the fast path declines: the union decides, as before
        taken += 1
        union = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        assert type(union) is types.JSONRPCRequest and union == fast, line
        assert decode_message(line) == fast
    assert taken >= 4
    for line in LINES:
        message = decode_message(line)
        wrapped = decode_line(line)
        assert message == wrapped if isinstance(message, Undecodable) else wrapped.message == message
