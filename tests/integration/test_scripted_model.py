"""The scripted Messages API server over real loopback HTTP: SSE shape, errors, count_tokens, records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio

from hive_trio.agent import scripted_model as sm
from hive_trio.agent.runtimes.claude import SessionStore, cli_environment, usage_of


async def post(url: str, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(raw)}\r\n"
        await stream.send_all(head.encode() + b"connection: close\r\n\r\n" + raw)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    lines = header.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    if headers.get("transfer-encoding") == "chunked":
        body_bytes, rest = b"", payload
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            body_bytes, rest = body_bytes + rest[:n], rest[n + 2 :]
        payload = body_bytes
    return int(lines[0].split()[1]), headers, payload


def sse_events(payload: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in payload.decode().splitlines() if line.startswith("data: ")]


TOOLS = [{"name": "mcp__hive__send", "input_schema": {"type": "object"}}]


async def test_a_script_streams_text_then_a_tool_use_and_records_the_requests() -> None:
    script = [sm.text("hello"), sm.tool_use("mcp__hive__send", {"to": "operator", "body": "hi"})]
    async with sm.open_scripted_model(script) as model:
        request = {"model": "m", "stream": True, "tools": TOOLS, "messages": [{"role": "user", "content": "wake"}]}
        status, headers, payload = await post(model.url, "/v1/messages?beta=true", request)
        assert status == 200 and headers["content-type"] == "text/event-stream"
        events = sse_events(payload)
        assert [e["type"] for e in events] == [
            "message_start", "content_block_start", "content_block_delta", "content_block_stop",
            "message_delta", "message_stop",
        ]  # fmt: skip
        assert events[2]["delta"] == {"type": "text_delta", "text": "hello"}
        assert events[4]["delta"]["stop_reason"] == "end_turn"
        _, _, payload = await post(model.url, "/v1/messages", request)
        events = sse_events(payload)
        block = events[1]["content_block"]
        assert block["type"] == "tool_use" and block["name"] == "mcp__hive__send"
        assert json.loads(events[2]["delta"]["partial_json"]) == {"to": "operator", "body": "hi"}
        assert events[4]["delta"]["stop_reason"] == "tool_use"
        # The script is used up: the default answers, without streaming when not asked to.
        _, _, payload = await post(model.url, "/v1/messages", {**request, "stream": False})
        assert json.loads(payload)["content"] == [{"type": "text", "text": "Done."}]
        assert len(model.main_requests) == 3 and model.main_requests[0].last_user_text() == "wake"


async def test_errors_side_requests_count_tokens_and_a_deferred_tool() -> None:
    async with sm.open_scripted_model([sm.auth_failure()]) as model:
        main = {"stream": True, "tools": TOOLS, "messages": [{"role": "user", "content": "x"}]}
        status, _, payload = await post(model.url, "/v1/messages", main)
        assert status == 401 and json.loads(payload)["error"]["type"] == "authentication_error"
        status, _, payload = await post(model.url, "/v1/messages/count_tokens", main)
        assert status == 200 and json.loads(payload)["input_tokens"] > 0
        # A side request (no tools) leaves the script alone.
        model.push(sm.tool_use("mcp__hive__send", {"to": "bob", "body": "b"}))
        _, _, payload = await post(model.url, "/v1/messages", {"stream": False, "messages": []})
        assert json.loads(payload)["content"][0]["type"] == "text" and model.script
        # The wanted tool is deferred behind ToolSearch: the server searches first, then uses it.
        deferred = {
            **main,
            "tools": [{"name": "ToolSearch"}, {"name": "mcp__hive__send", "defer_loading": True}],
        }
        events = sse_events((await post(model.url, "/v1/messages", deferred))[2])
        assert events[1]["content_block"]["name"] == "ToolSearch"
        assert json.loads(events[2]["delta"]["partial_json"])["query"] == "select:mcp__hive__send"
        events = sse_events((await post(model.url, "/v1/messages", deferred))[2])
        assert events[1]["content_block"]["name"] == "mcp__hive__send"
        status, _, _ = await post(model.url, "/v1/other", {})
        assert status == 404
        status, _, payload = await post(model.url, "/v1/messages", b"not json")
        assert status == 400 and b"not a JSON object" in payload


def test_claude_runtime_pieces(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    assert store.load() is None
    store.save("abc")
    assert store.load() == "abc"
    store.path.write_text("garbage")
    assert store.load() is None
    env = cli_environment({"ANTHROPIC_API_KEY": "k"})
    assert env == {"HIVE_HARNESS_FD": "", "ENABLE_TOOL_SEARCH": "false"}
    assert "ENABLE_TOOL_SEARCH" not in cli_environment({"ENABLE_TOOL_SEARCH": "true"})
    usage = usage_of({"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 7}, model="m", cost=0.5)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cost_usd) == (5, 2, 7, 0.5)
