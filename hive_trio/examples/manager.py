"""An example manager: a real MCP client of the manager socket, as bundled with `hive-trio up`.

Run as `python -m hive_trio.examples.manager` (`config.manager_command`); the daemon sets
`HIVE_SOCKET` to the manager socket and `HIVE_AGENTS_DIR` to the agents' config repos (hyperhive
bind-mounts the same tree into its manager container as `/agents`). Once, it commits a small change
to the first agent's `agent.toml` (a new greeting) and asks for it with `request_apply_commit`, so
the operator has an approval to look at; then it reads and acks the lifecycle events the daemon
sends it. It never touches the applied repos or the database: only its socket and the config repos.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, NoReturn

import trio

from hive_trio.clients.mcp import AgentClient, open_agent_client
from hive_trio.examples.agent import RECONNECT_FIRST, RECONNECT_MAX, agent_names, messages_of, say
from hive_trio.lifecycle import config_repos
from hive_trio.records import MANAGER_AGENT

PROPOSED_MARKER: Final = "proposed.json"
GREETING_KEY: Final = "EXAMPLE_GREETING"
NEW_GREETING: Final = "hej"
WHO: Final = "manager"


def with_greeting(agent_toml: str, greeting: str) -> str:
    """`agent_toml` with `EXAMPLE_GREETING` set under `[env]` (the table is added if missing)."""
    line = f'{GREETING_KEY} = "{greeting}"'
    lines = agent_toml.splitlines()
    kept = [existing for existing in lines if not existing.strip().startswith(f"{GREETING_KEY} =")]
    if "[env]" in (existing.strip() for existing in kept):
        at = next(i for i, existing in enumerate(kept) if existing.strip() == "[env]")
        kept.insert(at + 1, line)
    else:
        kept += ["", "[env]", line]
    return "\n".join(kept) + "\n"


class ExampleManager:
    def __init__(self, *, socket: Path, agents_dir: Path, state_dir: Path) -> None:
        self.socket = socket
        self.agents_dir = agents_dir
        self.state_dir = state_dir

    async def run(self) -> NoReturn:
        delay = RECONNECT_FIRST
        while True:
            try:
                async with open_agent_client(self.socket, client_name="example-manager") as client:
                    delay = RECONNECT_FIRST
                    await self.session(client)
            except Exception as exc:  # keep going whatever the socket did
                say(WHO, f"not connected ({type(exc).__name__}: {exc}); retrying in {delay:g} s")
            await trio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def session(self, client: AgentClient) -> None:
        await client.call("requeue_inflight")
        say(WHO, f"connected to {self.socket}")
        marker = trio.Path(self.state_dir / PROPOSED_MARKER)
        while not await marker.exists():
            names = [n for n in agent_names(await client.call("list_agents")) if n != MANAGER_AGENT]
            if names:
                result = await self.propose(client, names[0])
                await marker.write_text(json.dumps(result))
                break
            await trio.sleep(1.0)
        while True:
            result = await client.call("recv", wait_seconds=30, max=8)
            for message in messages_of(result):
                self.report(message)
            await client.call("ack_turn")

    async def propose(self, client: AgentClient, agent: str) -> Any:
        """Commit a new greeting in `agent`'s config repo and ask the operator to apply it."""
        repo = self.agents_dir / agent / "config"
        toml = trio.Path(repo / "agent.toml")
        text = await toml.read_text() if await toml.exists() else ""
        await toml.write_text(with_greeting(text, NEW_GREETING))
        identity = ["-c", "user.name=example-manager", "-c", "user.email=manager@hive.invalid"]
        await config_repos.run_git(repo, ["add", "agent.toml"], what="stage agent.toml")
        await config_repos.run_git(
            repo, [*identity, "commit", "--quiet", "-m", f"{agent}: greet in Swedish"], what="commit"
        )
        sha = await config_repos.rev_parse(repo, "HEAD")
        result = await client.call(
            "request_apply_commit",
            agent=agent,
            commit_ref=sha,
            description=f"Let {agent} greet its peers with '{NEW_GREETING}' (sets {GREETING_KEY} in agent.toml).",
        )
        say(WHO, f"asked the operator to apply {sha[:12]} to {agent}: {result}")
        return result

    def report(self, message: Mapping[str, Any]) -> None:
        body = str(message.get("body", ""))
        try:
            event = json.loads(body)
        except ValueError:
            say(WHO, f"{message.get('from')} says: {body.splitlines()[0] if body else ''}")
            return
        say(WHO, f"event from the hive: {event}")


def main() -> None:
    try:
        socket = Path(os.environ["HIVE_SOCKET"])
        agents_dir = Path(os.environ["HIVE_AGENTS_DIR"])
    except KeyError as exc:
        sys.exit(f"example_manager: {exc.args[0]} is not set; the hive daemon sets it when it starts the manager")
    manager = ExampleManager(
        socket=socket, agents_dir=agents_dir, state_dir=Path(os.environ.get("HIVE_STATE_DIR", "."))
    )
    try:
        trio.run(manager.run)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
