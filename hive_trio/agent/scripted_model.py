"""A scripted Anthropic Messages API server on loopback, so real Claude Code runs offline in tests.

Claude Code honours `ANTHROPIC_BASE_URL`; point it here and every `POST /v1/messages` is answered from a
script of replies (text, tool uses, HTTP errors such as a 401), streamed as the real API streams
(`message_start`, `content_block_start/delta/stop`, `message_delta`, `message_stop`). Every request is
recorded, so a test can assert what the agent sent and wait for the next one. `count_tokens` is answered
with a rough count.

Newer Claude Code releases defer MCP tools behind a `ToolSearch` tool: a tool the request does not carry
yet is first loaded by a `ToolSearch` call with `select:<name>`. The server does that step itself, so a
script only says which tool it wants.

Only the "main" requests of the agent loop consume the script (those that offer tools); side requests
(titles, summaries) get a short text. This module is HTTP and SSE only: it never imports the hive.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, NoReturn

import attrs
import h11
import trio

DEFAULT_MODEL: Final = "claude-scripted-1"
TOOL_SEARCH: Final = "ToolSearch"
MAX_BODY: Final = 32 * 1024 * 1024
RECEIVE_BYTES: Final = 65536


# ------------------------------------------------------------------------------------------ replies


@attrs.frozen
class TextReply:
    """An assistant text block; the turn ends (`end_turn`)."""

    text: str
    delay: float = 0.0  # seconds to stall after the first delta, as a slow model would


@attrs.frozen
class ToolUseReply:
    """One tool use (`stop_reason: tool_use`), optionally with some text before it."""

    name: str
    input: Mapping[str, Any] = attrs.field(factory=dict)
    text: str | None = None


@attrs.frozen
class ErrorReply:
    """An HTTP error with the API's JSON error body (`{"type":"error","error":{...}}`)."""

    status: int
    message: str
    error_type: str = "api_error"


@attrs.frozen
class HangReply:
    """Start streaming, then stall for `seconds` (a long turn to interrupt, a daemon to restart under)."""

    seconds: float = math.inf
    text: str = "thinking about it"


Reply = TextReply | ToolUseReply | ErrorReply | HangReply
ReplyFactory = Callable[["RecordedRequest"], Reply]


def text(body: str, *, delay: float = 0.0) -> TextReply:
    return TextReply(body, delay)


def tool_use(name: str, tool_input: Mapping[str, Any] | None = None, *, text: str | None = None) -> ToolUseReply:
    return ToolUseReply(name, dict(tool_input or {}), text)


def error(status: int, message: str, *, error_type: str = "api_error") -> ErrorReply:
    return ErrorReply(status, message, error_type)


def auth_failure() -> ErrorReply:
    """What the API answers a bad key: 401 `authentication_error`."""
    return ErrorReply(401, "invalid x-api-key", "authentication_error")


def hang(seconds: float = math.inf) -> HangReply:
    return HangReply(seconds)


# ----------------------------------------------------------------------------------------- requests


@attrs.frozen
class RecordedRequest:
    """One request the server received: its path, headers (lower-cased) and JSON body."""

    index: int
    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    received_at: float  # trio.current_time()

    @property
    def tool_names(self) -> list[str]:
        tools = self.body.get("tools") if isinstance(self.body, Mapping) else None
        return [t["name"] for t in tools or () if isinstance(t, Mapping) and isinstance(t.get("name"), str)]

    @property
    def is_main(self) -> bool:
        """A request of the agent loop (it offers tools), not a side request such as a title."""
        return self.path.startswith("/v1/messages") and not self.path.endswith("count_tokens") and bool(self.tool_names)

    @property
    def messages(self) -> list[Any]:
        found = self.body.get("messages") if isinstance(self.body, Mapping) else None
        return list(found or [])

    def text(self) -> str:
        """Every text in the request's messages, joined: what the agent was told, tool results included."""
        parts: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, str):
                parts.append(node)
            elif isinstance(node, Mapping):
                for key in ("text", "content"):
                    if key in node:
                        walk(node[key])
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(self.messages)
        return "\n".join(parts)

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if isinstance(message, Mapping) and message.get("role") == "user":
                holder: list[Any] = [message]
                return RecordedRequest(self.index, self.method, self.path, self.headers, {"messages": holder}, 0).text()
        return ""


def tool_is_loaded(request: RecordedRequest, name: str) -> bool:
    """Whether the request offers `name` directly (not deferred behind ToolSearch)."""
    tools = request.body.get("tools") if isinstance(request.body, Mapping) else None
    for tool in tools or ():
        if isinstance(tool, Mapping) and tool.get("name") == name and not tool.get("defer_loading", False):
            return True
    return _tool_referenced(request, name)


def _tool_referenced(request: RecordedRequest, name: str) -> bool:
    """A `tool_reference` block for `name` in the conversation, or a ToolSearch already asked for it:
    either way a second search would loop."""
    found = False

    def walk(node: Any) -> None:
        nonlocal found
        if isinstance(node, Mapping):
            if node.get("type") == "tool_reference" and node.get("tool_name") == name:
                found = True
            if node.get("type") == "tool_use" and node.get("name") == TOOL_SEARCH:
                query = node.get("input", {}).get("query") if isinstance(node.get("input"), Mapping) else None
                found = found or query == f"select:{name}"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(request.messages)
    return found


# ------------------------------------------------------------------------------------------- server


class ScriptedModel:
    """The server's state: the script, the recorded requests, and a way to wait for them.

    `script` is consumed in order by main requests. Once it is empty, `default` answers (a callable gets
    the request). Add replies while it runs with `push`.
    """

    def __init__(
        self, script: Iterable[Reply] = (), *, default: Reply | ReplyFactory | None = None, model: str = DEFAULT_MODEL
    ) -> None:
        self.script: list[Reply] = list(script)
        self.default: Reply | ReplyFactory = default if default is not None else TextReply("Done.")
        self.model = model
        self.requests: list[RecordedRequest] = []
        self.url = ""
        self._changed = trio.Condition()
        self._ids = itertools.count(1)
        self._after_search: Reply | None = None

    # ------------------------------------------------------------------ for tests
    @property
    def main_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.is_main]

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)

    async def wait_for(self, predicate: Callable[[Sequence[RecordedRequest]], bool]) -> None:
        """Block until `predicate(self.requests)` holds."""
        async with self._changed:
            while not predicate(self.requests):
                await self._changed.wait()

    async def wait_for_main(self, count: int) -> RecordedRequest:
        """Block until `count` main requests arrived; return the `count`-th."""
        await self.wait_for(lambda rs: sum(r.is_main for r in rs) >= count)
        return self.main_requests[count - 1]

    # ------------------------------------------------------------------ answering
    def _next_reply(self, request: RecordedRequest) -> Reply:
        if not request.is_main:
            return TextReply("Hive agent")
        if self._after_search is not None:
            reply, self._after_search = self._after_search, None
            return reply
        source: Reply | ReplyFactory = self.script.pop(0) if self.script else self.default
        reply = source(request) if callable(source) else source
        if isinstance(reply, ToolUseReply) and reply.name != TOOL_SEARCH and self._must_search(request, reply.name):
            # The tool is deferred: load it first, and answer the next request with the scripted use.
            self._after_search = reply
            return ToolUseReply(TOOL_SEARCH, {"query": f"select:{reply.name}", "max_results": 1})
        return reply

    @staticmethod
    def _must_search(request: RecordedRequest, name: str) -> bool:
        return TOOL_SEARCH in request.tool_names and not tool_is_loaded(request, name)

    async def _record(self, method: str, path: str, headers: Mapping[str, str], body: Any) -> RecordedRequest:
        request = RecordedRequest(len(self.requests), method, path, headers, body, trio.current_time())
        self.requests.append(request)
        async with self._changed:
            self._changed.notify_all()
        return request

    async def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> AsyncGenerator[Any, None]:
        """Answer one request; yields `(status, headers)` first, then body chunks (bytes)."""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = await self._record(method, path, headers, body)
        route = path.split("?", 1)[0]
        if method != "POST" or not route.startswith("/v1/messages"):
            yield 404, _json_headers()
            yield _error_body("not_found_error", f"no route {method} {route}")
            return
        if not isinstance(body, Mapping):
            yield 400, _json_headers()
            yield _error_body("invalid_request_error", "the body is not a JSON object")
            return
        if route.endswith("/count_tokens"):
            yield 200, _json_headers()
            yield json.dumps({"input_tokens": _rough_tokens(raw)}).encode()
            return
        reply = self._next_reply(request)
        if isinstance(reply, ErrorReply):
            yield reply.status, [*_json_headers(), (b"request-id", b"req_scripted")]
            yield _error_body(reply.error_type, reply.message)
            return
        message_id = f"msg_scripted_{next(self._ids):04d}"
        input_tokens = _rough_tokens(raw)
        if body.get("stream"):
            yield 200, [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
            async for chunk in self._stream(reply, message_id, input_tokens):
                yield chunk
        else:
            yield 200, _json_headers()
            yield json.dumps(self._whole(reply, message_id, input_tokens)).encode()

    def _blocks(self, reply: Reply) -> tuple[list[dict[str, Any]], str]:
        if isinstance(reply, ToolUseReply):
            blocks: list[dict[str, Any]] = []
            if reply.text:
                blocks.append({"type": "text", "text": reply.text})
            tool_id = f"toolu_scripted_{next(self._ids):04d}"
            blocks.append({"type": "tool_use", "id": tool_id, "name": reply.name, "input": dict(reply.input)})
            return blocks, "tool_use"
        if isinstance(reply, TextReply | HangReply):
            return [{"type": "text", "text": reply.text}], "end_turn"
        raise AssertionError(reply)

    def _whole(self, reply: Reply, message_id: str, input_tokens: int) -> dict[str, Any]:
        blocks, stop = self._blocks(reply)
        return {
            **_message_shell(message_id, self.model, input_tokens),
            "content": blocks,
            "stop_reason": stop,
            "usage": {"input_tokens": input_tokens, "output_tokens": _output_tokens(blocks)},
        }

    async def _stream(self, reply: Reply, message_id: str, input_tokens: int) -> AsyncIterator[bytes]:
        blocks, stop = self._blocks(reply)
        shell = {**_message_shell(message_id, self.model, input_tokens), "content": [], "stop_reason": None}
        yield _sse("message_start", {"type": "message_start", "message": shell})
        for index, block in enumerate(blocks):
            start: dict[str, Any]
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                start = {**block, "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            yield _sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            stall = reply.seconds if isinstance(reply, HangReply) else getattr(reply, "delay", 0.0)
            if stall:
                await trio.sleep(stall)
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        usage = {"output_tokens": _output_tokens(blocks)}
        yield _sse(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage},
        )
        yield _sse("message_stop", {"type": "message_stop"})


def _message_shell(message_id: str, model: str, input_tokens: int) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _rough_tokens(raw: bytes) -> int:
    return max(1, len(raw) // 4)


def _output_tokens(blocks: Sequence[Mapping[str, Any]]) -> int:
    return max(1, len(json.dumps(list(blocks))) // 4)


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _json_headers() -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json")]


def _error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": error_type, "message": message}}).encode()


# ------------------------------------------------------------------------------------ HTTP (h11)


async def _serve_connection(model: ScriptedModel, stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    async with stream:
        while True:
            request: h11.Request | None = None
            body = bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        data = await stream.receive_some(RECEIVE_BYTES)
                    except trio.BrokenResourceError:
                        return
                    conn.receive_data(bytes(data))
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_BODY:
                        return
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
            assert request is not None
            headers = {k.decode().lower(): v.decode(errors="replace") for k, v in request.headers}
            answer = model.handle(request.method.decode(), request.target.decode(), headers, bytes(body))
            try:
                status, response_headers = await answer.__anext__()
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=response_headers)) or b"")
                async for chunk in answer:
                    await stream.send_all(conn.send(h11.Data(data=chunk)) or b"")
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the client went away mid-reply (an interrupt aborts its request)
            finally:
                await answer.aclose()
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return


async def serve_scripted_model(
    model: ScriptedModel, *, host: str = "127.0.0.1", port: int = 0, task_status: Any = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    """Serve `model` over HTTP on `host:port`; `task_status.started(url)` once listening."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    sockname = listeners[0].socket.getsockname()
    model.url = f"http://{host}:{sockname[1]}"

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _serve_connection(model, stream)
        except h11.ProtocolError:
            return

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(model.url)
        await trio.sleep_forever()
    raise AssertionError("unreachable")


@asynccontextmanager
async def open_scripted_model(
    script: Iterable[Reply] = (), *, default: Reply | ReplyFactory | None = None, model: str = DEFAULT_MODEL
) -> AsyncIterator[ScriptedModel]:
    """Run a scripted model server for the block; its `url` is the `ANTHROPIC_BASE_URL` to use."""
    scripted = ScriptedModel(script, default=default, model=model)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_scripted_model, scripted)
        try:
            yield scripted
        finally:
            nursery.cancel_scope.cancel()


__all__ = [
    "ErrorReply",
    "HangReply",
    "RecordedRequest",
    "Reply",
    "ScriptedModel",
    "TextReply",
    "ToolUseReply",
    "auth_failure",
    "error",
    "hang",
    "open_scripted_model",
    "serve_scripted_model",
    "text",
    "tool_is_loaded",
    "tool_use",
]
