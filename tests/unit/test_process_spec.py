"""The process backend's pure pieces: command templates, agent.toml, the environment, exit wording."""

from __future__ import annotations

import shlex
import signal
from pathlib import Path

import pytest

from hive_trio.errors import LifecycleFailed
from hive_trio.lifecycle.backends import Unit
from hive_trio.lifecycle.backends.process import (
    AgentSpec,
    agent_environment,
    describe_exit,
    parse_agent_toml,
    read_start_ticks,
    render_command,
    starter_agent_toml,
)


def _unit(tmp: Path, name: str = "alpha") -> Unit:
    return Unit(
        name=name,
        socket=tmp / "run" / name / "mcp.sock",
        socket_dir=tmp / "run" / name,
        notes=tmp / "state" / name / "state",
        claude=tmp / "state" / name / "claude",
        log=tmp / "logs" / f"{name}.log",
        pid_record=tmp / "pids" / f"{name}.json",
        applied=tmp / "applied" / name,
    )


def test_render_substitutes_shell_quoted_and_leaves_other_braces() -> None:
    out = render_command(
        "exec agent --name {name} --sock {socket} --dir {state_dir} ${HOME} awk '{print $1}' {other}",
        name="alpha",
        socket=Path("/run/with space/mcp.sock"),
        state_dir=Path("/s/it's"),
    )
    assert "--name alpha" in out
    assert "--sock '/run/with space/mcp.sock'" in out
    assert shlex.split(out)[7] == "/s/it's"
    assert "${HOME}" in out and "'{print $1}'" in out and "{other}" in out


def test_render_cannot_inject_through_a_path() -> None:
    out = render_command("echo {state_dir}", name="a", socket=Path("/x"), state_dir=Path("/tmp/$(touch pwned);x"))
    assert shlex.split(out) == ["echo", "/tmp/$(touch pwned);x"]


def test_parse_agent_toml_reads_command_and_env() -> None:
    spec = parse_agent_toml('[agent]\ncommand = "exec foo"\ndescription = "d"\n[env]\nGREETING = "hej"\n')
    assert spec == AgentSpec(command="exec foo", env={"GREETING": "hej"})


def test_missing_agent_toml_and_the_starter_both_mean_defaults() -> None:
    assert parse_agent_toml(None) == AgentSpec()
    assert parse_agent_toml(starter_agent_toml("alpha")) == AgentSpec()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[agent\n", "not valid TOML"),
        ("[agnet]\n", "unknown table"),
        ("[agent]\ncmd = 'x'\n", "unknown key"),
        ("[agent]\ncommand = ''\n", "non-empty string"),
        ("[agent]\ncommand = 5\n", "non-empty string"),
        ("[env]\nHIVE_AGENT = 'evil'\n", "set by the daemon"),
        ("[env]\nCLAUDE_CONFIG_DIR = '/root'\n", "set by the daemon"),
        ("[env]\nX = 1\n", "must be a string"),
        ('[env]\n"BAD-NAME" = "v"\n', "not an environment variable name"),
        ("env = 'x'\n", "must be a table"),
    ],
)
def test_parse_agent_toml_refuses_with_the_key_named(text: str, fragment: str) -> None:
    with pytest.raises(LifecycleFailed, match=fragment):
        parse_agent_toml(text)


def test_environment_carries_the_wiring_and_drops_daemon_settings(tmp_path: Path) -> None:
    unit = _unit(tmp_path)
    base = {"PATH": "/bin", "HIVE_TRIO_STATE_DIR": "/secret", "HIVE_AGENT": "impostor", "CLAUDE_CONFIG_DIR": "/x"}
    env = agent_environment(unit, AgentSpec(env={"GREETING": "hej"}), operator_pronouns="they/them", base=base)
    assert env["PATH"] == "/bin"
    assert "HIVE_TRIO_STATE_DIR" not in env
    assert env["HIVE_AGENT"] == "alpha"
    assert env["HIVE_SOCKET"] == str(unit.socket)
    assert env["HIVE_STATE_DIR"] == str(unit.notes)
    assert env["HIVE_OPERATOR_PRONOUNS"] == "they/them"
    assert env["CLAUDE_CONFIG_DIR"] == str(unit.claude)
    assert env["GREETING"] == "hej"
    assert "HIVE_AGENTS_DIR" not in env


def test_describe_exit() -> None:
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(None) == "is still running"


def test_start_ticks_identify_this_process() -> None:
    import os

    ticks = read_start_ticks(os.getpid())
    assert isinstance(ticks, int) and ticks > 0
    assert read_start_ticks(2**22 + 12345) is None
