"""An example hive agent: a real MCP client of its own socket, as bundled with `hive-trio up`.

Run as `python -m hive_trio.examples.agent`; the daemon's process backend sets `HIVE_AGENT`,
`HIVE_SOCKET` and `HIVE_STATE_DIR`. It does what a real harness does, minus the model: requeues
its in-flight messages at boot, greets its peers in turn, answers what they send, acks each turn,
and the first agent (by name) asks the operator a question with a deadline, once. It shows how any
agent talks to the hive; it must never reach into the daemon other than through its socket.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

import trio

from hive_trio.clients.mcp import AgentClient, open_agent_client
from hive_trio.records import MANAGER_AGENT, OPERATOR, SYSTEM_SENDER

DEFAULT_INTERVAL: Final = 4.0
RECONNECT_FIRST: Final = 0.2
RECONNECT_MAX: Final = 5.0
ASKED_MARKER: Final = "asked-operator.json"
QUESTION: Final = "Which part of the codebase should we look at first?"
OPTIONS: Final = ("the tests", "the docs", "the refactor")
QUESTION_TTL: Final = 900.0


def say(name: str, text: str) -> None:
    print(f"[{name}] {text}", flush=True)


def agent_names(result: Any) -> list[str]:
    """Names from a `list_agents` result, whether it is a list of names, of rows, or `{"agents": ...}`."""
    items = result.get("agents", []) if isinstance(result, Mapping) else result
    names: set[str] = set()
    if isinstance(items, Sequence) and not isinstance(items, str):
        for item in items:
            if isinstance(item, str):
                names.add(item)
            elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
                names.add(item["name"])
    return sorted(names)


def messages_of(result: Any) -> list[Mapping[str, Any]]:
    items = result.get("messages", []) if isinstance(result, Mapping) else []
    return [m for m in items if isinstance(m, Mapping)]


class ExampleAgent:
    def __init__(self, *, name: str, socket: Path, state_dir: Path, interval: float, greeting: str) -> None:
        self.name = name
        self.socket = socket
        self.state_dir = state_dir
        self.interval = interval
        self.greeting = greeting
        self.sent = 0

    async def run(self) -> NoReturn:
        """Stay connected: a socket that is not there yet, or goes away, is retried with backoff."""
        delay = RECONNECT_FIRST
        while True:
            try:
                async with open_agent_client(self.socket, client_name=f"example-agent-{self.name}") as client:
                    delay = RECONNECT_FIRST
                    await self.session(client)
            except Exception as exc:  # a harness keeps going whatever the socket did
                say(self.name, f"not connected ({type(exc).__name__}: {exc}); retrying in {delay:g} s")
            await trio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def session(self, client: AgentClient) -> None:
        requeued = await client.call("requeue_inflight")
        say(self.name, f"connected to {self.socket} (requeued: {requeued})")
        await client.call("set_status", text=f"{self.greeting}! chatting with my peers")
        await self.maybe_ask_operator(client)
        next_greeting = trio.current_time()
        while True:
            peers = [n for n in agent_names(await client.call("list_agents")) if n not in (self.name, MANAGER_AGENT)]
            if peers and trio.current_time() >= next_greeting:
                # One greeting per interval, round robin; replies to them are the rest of the traffic.
                peer = peers[self.sent % len(peers)]
                self.sent += 1
                await client.call("send", to=peer, body=f"{self.greeting} from {self.name} (#{self.sent})")
                next_greeting = trio.current_time() + self.interval
            wait = max(0.0, next_greeting - trio.current_time())
            result = await client.call("recv", wait_seconds=wait, max=8)
            for message in messages_of(result):
                await self.handle(client, message, peers)
            await client.call("ack_turn")

    async def maybe_ask_operator(self, client: AgentClient) -> None:
        """The first agent by name asks the operator once (a marker in its state dir remembers)."""
        marker = trio.Path(self.state_dir / ASKED_MARKER)
        if await marker.exists():
            return
        names = [n for n in agent_names(await client.call("list_agents")) if n != MANAGER_AGENT]
        if not names or names[0] != self.name:
            return
        result = await client.call(
            "ask",
            question=QUESTION,
            options=list(OPTIONS),
            ttl_seconds=QUESTION_TTL,
            default=OPTIONS[0],
        )
        await marker.write_text(json.dumps(result))
        say(self.name, f"asked the operator: {QUESTION} ({result})")

    async def handle(self, client: AgentClient, message: Mapping[str, Any], peers: Sequence[str]) -> None:
        sender = message.get("from")
        body = str(message.get("body", ""))
        if sender == SYSTEM_SENDER:
            await self.handle_system(client, body)
            return
        say(self.name, f"{sender} says: {body}")
        if sender in peers and not body.startswith("re: "):
            await client.call("send", to=sender, body=f"re: {body[:120]}")
        elif sender == OPERATOR:
            await client.call("send", to=OPERATOR, body=f"thanks, noted: {body[:120]}")

    async def handle_system(self, client: AgentClient, body: str) -> None:
        try:
            event = json.loads(body)
        except ValueError:
            say(self.name, f"system: {body.splitlines()[0] if body else ''}")
            return
        if isinstance(event, Mapping) and event.get("event") == "question_answered":
            answer = event.get("answer")
            say(self.name, f"my question was answered by {event.get('answerer')}: {answer}")
            await client.call("set_status", text=f"working on {answer}")
        else:
            say(self.name, f"system event: {event}")


def main() -> None:
    try:
        name = os.environ["HIVE_AGENT"]
        socket = Path(os.environ["HIVE_SOCKET"])
    except KeyError as exc:
        sys.exit(f"example_agent: {exc.args[0]} is not set; the hive daemon sets it when it starts an agent")
    state_dir = Path(os.environ.get("HIVE_STATE_DIR", "."))
    interval = float(os.environ.get("EXAMPLE_INTERVAL", DEFAULT_INTERVAL))
    agent = ExampleAgent(
        name=name,
        socket=socket,
        state_dir=state_dir,
        interval=interval,
        greeting=os.environ.get("EXAMPLE_GREETING", "hello"),
    )
    try:
        trio.run(agent.run)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
