"""The command-per-turn runtime, with a shell script standing in for an agent CLI: it reads the prompt,
reaches the hive through `{mcp_bridge}` as a one-shot MCP client, and fails on request."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import trio

from hive_trio.agent.runtimes.command import TemplateError, check_template, render
from hive_trio.testing import open_test_hive, short_temp_dir

HANDSHAKE = [
    {"jsonrpc": "2.0", "id": 0, "method": "initialize",
     "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "cli", "version": "1"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
     "params": {"name": "send", "arguments": {"to": "operator", "body": "the command turn ran"}}},
]  # fmt: skip

# The stand-in CLI: keep the prompt, fail while a "boom" prompt is new, else send the operator a message.
SCRIPT = """
prompt=$(cat)
printf '%s\\n---\\n' "$prompt" >> turns.log
case "$prompt" in *boom*) case "$prompt" in *"did not finish"*) ;; *) echo "exploding" >&2; exit 3;; esac;; esac
printf '%s\\n' {lines} | {{mcp_bridge}} > bridge.out
"""


def turn_command() -> str:
    lines = " ".join(shlex.quote(json.dumps(m)).replace("{", "{{").replace("}", "}}") for m in HANDSHAKE)
    return SCRIPT.format(lines=lines)


async def eventually_acked(hive: object, mid: int) -> None:
    with trio.fail_after(40):
        while True:
            rows = await hive.coordinator.recent_messages(None, limit=500)  # type: ignore[attr-defined]
            if any(m.id == mid and m.acked_at is not None for m in rows):
                return
            await trio.sleep(0.05)


async def test_a_command_turn_gets_the_prompt_reaches_the_hive_and_a_failure_comes_back() -> None:
    harness = shlex.join(
        [sys.executable, "-m", "hive_trio", "agent", "--runtime", "command", "--retry-delay", "0.2",
         "--turn-command", turn_command()]
    )  # fmt: skip
    with short_temp_dir() as root:
        async with open_test_hive(directory=root, lifecycle=True, agent_command=harness) as hive:
            await hive.coordinator.ops.spawn("alice")
            [first] = await hive.coordinator.send("operator", "alice", "hello command")
            await eventually_acked(hive, first.id)
            [second] = await hive.coordinator.send("operator", "alice", "boom")
            await eventually_acked(hive, second.id)
            notes = hive.coordinator.paths.agent_notes("alice")
            turns = (notes / "turns.log").read_text().split("\n---\n")
            assert any("hello command" in t and "Message" in t for t in turns)
            booms = [t for t in turns if "boom" in t]
            assert len(booms) == 2 and "did not finish" in booms[1]
            bodies = [m.body for m in await hive.coordinator.recent_messages("operator")]
            assert "the command turn ran" in bodies
            assert "exploding" in hive.coordinator.paths.agent_log("alice").read_text()
            # Each agent has its own config homes.
            assert (notes / ".hive-harness" / "home" / "codex").is_dir()


def test_templates_are_checked_and_quoted() -> None:
    with pytest.raises(TemplateError, match="unknown placeholder"):
        check_template("run {prompt}")
    with pytest.raises(TemplateError, match="literal brace"):
        check_template("run {")
    rendered = render(
        "x {prompt_file} {agent}", prompt_file=Path("/tmp/a b"), agent="al", socket=Path("/s"), state_dir=Path("/d")
    )
    assert rendered == "x '/tmp/a b' al"
