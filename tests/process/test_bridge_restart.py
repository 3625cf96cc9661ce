"""`hive-trio mcp-bridge` under a real agent: a one-shot client gets every reply owed, and a daemon restart
does not cost the client its session (the bridge reconnects and replays `initialize`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from hive_trio.clients.bridge import BridgeState
from hive_trio.rules.framing import LineFramer
from hive_trio.testing import open_test_hive, short_temp_dir

INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "one-shot", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def call(request_id: int, tool: str, **arguments: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


def lines(*messages: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(m).encode() + b"\n" for m in messages)


def bridge_argv(socket: Path) -> list[str]:
    return [sys.executable, "-m", "hive_trio", "mcp-bridge", str(socket)]


async def test_a_one_shot_client_that_closes_stdin_still_gets_its_reply() -> None:
    with short_temp_dir() as root:
        async with open_test_hive(agents=["alice", "bob"], directory=root) as hive:
            stdin = lines(INIT, INITIALIZED, call(1, "send", to="bob", body="one shot"))
            result = await trio.run_process(
                bridge_argv(hive.socket_path("alice")), stdin=stdin, capture_stdout=True, capture_stderr=True
            )
            replies = {m["id"]: m for m in map(json.loads, result.stdout.splitlines())}
            assert result.returncode == 0, result.stderr
            assert "error" not in replies[1], replies[1]
            assert not replies[1]["result"].get("isError")
            async with hive.open_agent("bob") as bob:
                got = await bob.call("recv", wait_seconds=5, max=8)
            assert [m["body"] for m in got["messages"] if m["from"] == "alice"] == ["one shot"]  # exactly once


async def test_the_bridge_reconnects_after_a_daemon_restart_and_replays_initialize() -> None:
    with short_temp_dir() as root:
        async with trio.open_nursery() as nursery:
            async with open_test_hive(agents=["alice", "bob"], directory=root) as hive:
                socket = hive.socket_path("alice")
                process = await trio.lowlevel.open_process(
                    bridge_argv(socket), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
                assert process.stdin is not None and process.stdout is not None
                replies: list[dict[str, Any]] = []
                arrived = trio.Condition()

                async def read_replies() -> None:
                    framer = LineFramer(max_frame=1 << 24)
                    assert process.stdout is not None
                    while data := await process.stdout.receive_some(65536):
                        for line in framer.feed(data):
                            replies.append(json.loads(line))
                            async with arrived:
                                arrived.notify_all()

                async def reply_to(request_id: int) -> dict[str, Any]:
                    async with arrived:
                        while not any(r.get("id") == request_id for r in replies):
                            await arrived.wait()
                    return next(r for r in replies if r.get("id") == request_id)

                nursery.start_soon(read_replies)
                await process.stdin.send_all(lines(INIT, INITIALIZED, call(1, "whoami")))
                with trio.fail_after(20):
                    assert "alice" in json.dumps(await reply_to(1))
            # The daemon is gone; a new one comes up on the same directories.
            async with open_test_hive(directory=root) as hive:
                await process.stdin.send_all(lines(call(2, "send", to="bob", body="after the restart")))
                with trio.fail_after(20):
                    reply = await reply_to(2)
                assert "error" not in reply and not reply["result"].get("isError"), reply
                assert sum(1 for r in replies if r.get("id") == 0) == 1  # the replayed initialize's reply was swallowed
                await process.stdin.aclose()
                with trio.fail_after(20):
                    await process.wait()
                assert process.returncode == 0
            nursery.cancel_scope.cancel()


def test_bridge_state_replays_the_handshake_and_fails_requests_in_flight() -> None:
    state = BridgeState()
    for message in (INIT, INITIALIZED, call(1, "recv", wait_seconds=60)):
        state.from_client(json.dumps(message).encode())
    assert state.from_daemon(json.dumps({"jsonrpc": "2.0", "id": 0, "result": {}}).encode())
    replay, owed = state.reconnected()
    assert [json.loads(line)["method"] for line in replay] == ["initialize", "notifications/initialized"]
    assert [json.loads(line)["id"] for line in owed] == [1] and json.loads(owed[0])["error"]["code"] == -32000
    assert not state.from_daemon(json.dumps({"jsonrpc": "2.0", "id": 0, "result": {}}).encode())  # swallowed
    assert state.from_daemon(json.dumps({"jsonrpc": "2.0", "id": 0, "result": {}}).encode())  # only once
    assert state.from_daemon(b"not json")  # passed through untouched
