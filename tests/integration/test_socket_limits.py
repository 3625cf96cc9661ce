"""Unix-socket limits (issue 13): a per-socket connection cap with a clear refusal, host.sock's idle
timeout (not for a status subscriber, and not for MCP sessions parked in `recv`), and a listen backlog
that takes a burst of connects."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from hive_trio.sockets.host.protocol import encode_request
from hive_trio.sockets.unix_listener import BACKLOG, bind_unix_socket
from hive_trio.testing import InProcessHive, short_temp_dir


@pytest.fixture
def hive_settings() -> Mapping[str, Any]:
    return {"max_connections_per_socket": 4, "host_idle_timeout": 30.0}


@pytest.fixture
def hive_agents() -> tuple[str, ...]:
    return ("alpha",)


async def read_line(stream: trio.SocketStream) -> dict[str, Any] | None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some()
        if not chunk:
            return None
        data += chunk
    result: dict[str, Any] = json.loads(data)
    return result


async def ask(stream: trio.SocketStream, cmd: str) -> dict[str, Any] | None:
    await stream.send_all(encode_request(cmd))
    return await read_line(stream)


async def test_one_connection_past_the_cap_is_refused_with_a_line_and_the_rest_carry_on(hive: InProcessHive) -> None:
    held = [await trio.open_unix_socket(str(hive.host_socket)) for _ in range(4)]
    for stream in held:
        assert (await ask(stream, "list"))["ok"] is True  # type: ignore[index]
    extra = await trio.open_unix_socket(str(hive.host_socket))
    refusal = await read_line(extra)
    assert refusal is not None and refusal["ok"] is False
    assert refusal["error"] == "host.sock is at its cap of 4 connections; close one and try again"
    assert await read_line(extra) is None  # and closed
    await held.pop().aclose()
    with trio.fail_after(5):
        while True:  # the slot is free once the daemon has seen the close
            again = await trio.open_unix_socket(str(hive.host_socket))
            reply = await ask(again, "list")
            if reply is not None and reply["ok"]:
                break
            await again.aclose()
    # An agent socket has its own cap, and says so in JSON-RPC.
    agents = [await trio.open_unix_socket(str(hive.socket_path("alpha"))) for _ in range(4)]
    over = await trio.open_unix_socket(str(hive.socket_path("alpha")))
    error = await read_line(over)
    assert error is not None and error["id"] is None and "cap of 4 connections" in error["error"]["message"]
    for stream in [*held, again, extra, over, *agents]:
        await stream.aclose()


async def test_host_sock_closes_an_idle_connection_but_not_a_status_subscriber_or_an_agent_session(
    hive: InProcessHive, hive_autojump_clock: trio.testing.MockClock
) -> None:
    idle = await trio.open_unix_socket(str(hive.host_socket))
    assert (await ask(idle, "list"))["ok"] is True  # type: ignore[index]
    subscriber = await trio.open_unix_socket(str(hive.host_socket))
    assert (await ask(subscriber, "subscribe_agent_status"))["ok"] is True  # type: ignore[index]
    async with hive.open_agent("alpha") as alpha:
        await trio.sleep(31)
        goodbye = await read_line(idle)
        assert goodbye is not None and goodbye["error"] == "closing an idle connection: nothing was asked for 30 s"
        assert await read_line(idle) is None
        # The subscriber still gets its rows, and the agent session (idle just as long) still answers.
        await alpha.call("set_status", text="busy")
        row = await read_line(subscriber)
        assert row is not None and row["agent_statuses"][0]["name"] == "alpha"
        assert (await alpha.call("whoami"))["name"] == "alpha"
    await idle.aclose()
    await subscriber.aclose()


def test_the_backlog_takes_a_burst_of_two_thousand_connects() -> None:
    """The probe: 1,869 of 2,000 rapid connects failed at a backlog of 128. Nobody accepts here at all."""
    with short_temp_dir("hb-") as directory:
        path = Path(directory) / "s.sock"
        listener, _, _ = bind_unix_socket(path, mode=0o600)
        clients: list[socket.socket] = []
        refused = 0
        try:
            for _ in range(2000):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.setblocking(False)
                try:
                    client.connect(str(path))
                except BlockingIOError:
                    refused += 1
                    client.close()
                    continue
                clients.append(client)
        finally:
            for client in clients:
                client.close()
            listener.close()
    assert BACKLOG >= 2000 and refused == 0, refused
