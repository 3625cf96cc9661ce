"""The parts of `hive-trio up` and its examples that need no socket: config defaults, parsing, edits."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from hive_trio.cli import embedded_runtime_dir
from hive_trio.examples.agent import agent_names, messages_of
from hive_trio.examples.manager import with_greeting
from hive_trio.examples.up import example_agent_command, up_config
from hive_trio.lifecycle.backends.process import parse_agent_toml, starter_agent_toml
from hive_trio.rules.config import Config, default_runtime_dir, default_state_dir


def test_up_defaults_state_here_and_the_clis_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = up_config(Config())
    assert config.state_dir == tmp_path / "hive-state"
    assert config.runtime_dir == embedded_runtime_dir(tmp_path / "hive-state")
    assert config.runtime_dir != default_runtime_dir()
    assert sys.executable in config.agent_command and "hive_trio.examples.agent" in config.agent_command
    assert config.manager_command is not None and "hive_trio.examples.manager" in config.manager_command
    # The operator's own choices are kept.
    chosen = up_config(Config(state_dir=tmp_path / "s", runtime_dir=tmp_path / "r", agent_command="exec x"))
    assert (chosen.state_dir, chosen.runtime_dir, chosen.agent_command) == (tmp_path / "s", tmp_path / "r", "exec x")
    assert Config().state_dir == default_state_dir()


def test_example_agent_command_quotes_the_interpreter() -> None:
    assert example_agent_command("/opt/my python/bin/python3") == (
        "exec '/opt/my python/bin/python3' -m hive_trio.examples.agent"
    )


@pytest.mark.parametrize(
    "result",
    [
        ["bob", "alice"],
        {"agents": ["alice", "bob"]},
        {"agents": [{"name": "bob", "running": True}, {"name": "alice"}]},
        [{"name": "alice"}, "bob", 5, None],
    ],
)
def test_agent_names_reads_any_list_agents_shape(result: object) -> None:
    assert agent_names(result) == ["alice", "bob"]


def test_messages_of() -> None:
    assert messages_of({"messages": [{"from": "a", "body": "x"}, "junk"]}) == [{"from": "a", "body": "x"}]
    assert messages_of(None) == []


def test_the_manager_edit_is_valid_agent_toml() -> None:
    edited = with_greeting(starter_agent_toml("alice"), "hej")
    assert tomllib.loads(edited)["env"] == {"EXAMPLE_GREETING": "hej"}
    assert parse_agent_toml(edited).env == {"EXAMPLE_GREETING": "hej"}
    # Idempotent, and a file without [env] gets one.
    assert with_greeting(edited, "hej") == edited
    assert tomllib.loads(with_greeting("[agent]\n", "hi"))["env"] == {"EXAMPLE_GREETING": "hi"}


def test_banner_names_the_cli_as_the_operator_can_type_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hive_trio.examples.up import cli_name

    script = tmp_path / ".venv" / "bin" / "hive-trio"
    script.parent.mkdir(parents=True)
    script.touch()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [str(script), "up"])
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert cli_name() == ".venv/bin/hive-trio"
    monkeypatch.setattr("shutil.which", lambda name: str(script))
    assert cli_name() == "hive-trio"
    monkeypatch.setattr("sys.argv", ["-c"])  # run_up called from Python
    assert cli_name() == "hive-trio"


def test_up_runtime_claude_runs_the_harness_as_agents_and_manager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hive_trio.cli import build_parser
    from hive_trio.examples.up import claude_harness_command

    monkeypatch.chdir(tmp_path)
    harness = f"exec {sys.executable} -m hive_trio agent --runtime claude"
    assert claude_harness_command() == harness
    config = up_config(Config(), runtime="claude")
    assert (config.agent_command, config.manager_command) == (harness, harness)
    assert config.state_dir == tmp_path / "hive-state"
    # The default stays the offline examples, and the operator's own commands win over either.
    assert build_parser().parse_args(["up"]).runtime == "examples"
    assert build_parser().parse_args(["up", "--runtime", "claude"]).runtime == "claude"
    assert "hive_trio.examples.agent" in up_config(Config()).agent_command
    chosen = up_config(Config(agent_command="exec x", manager_command="exec m"), runtime="claude")
    assert (chosen.agent_command, chosen.manager_command) == ("exec x", "exec m")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--runtime", "codex"])


def test_up_runtime_claude_without_the_claude_extra_refuses_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from hive_trio.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "claude_agent_sdk" else real(name, *a)
    )
    assert main(["up", "--runtime", "claude"]) == 1
    assert "pip install 'hive-trio[claude]'" in capsys.readouterr().err


def test_the_claude_up_banner_promises_no_example_behaviour() -> None:
    from types import SimpleNamespace
    from typing import Any

    from hive_trio.examples.up import Pending, banner

    config = Config(state_dir=Path("/srv/h"), runtime_dir=Path("/srv/h/run"))
    coord: Any = SimpleNamespace(dashboard_url=None)
    text = banner(coord, config, Pending(), runtime="claude")
    assert "Claude Code agents alice, bob, carol" in text and "hive-trio agent --runtime claude" in text
    assert "example agents" not in text and "asks you" not in text and "Swedish" not in text
