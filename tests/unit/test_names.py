from __future__ import annotations

from pathlib import Path

import pytest

from hive_trio.rules.names import InvalidName, validate_agent_name, validate_recipient
from hive_trio.rules.paths import HivePaths

HOSTILE = ["../x", "A", "", "a" * 200, "a/b", "manager", "system", "operator", "a\x00b", "x..", "-a", "1a", " a"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidName) as info:
        validate_agent_name(name)
    assert str(info.value)  # a reason for a person


@pytest.mark.parametrize("name", HOSTILE)
def test_no_path_is_built_from_a_hostile_name(name: str, tmp_path: Path) -> None:
    paths = HivePaths(tmp_path / "state", tmp_path / "run")
    builders = [
        paths.agent_runtime,
        paths.agent_socket,
        paths.agent_state_root,
        paths.agent_config,
        paths.agent_notes,
        paths.agent_claude,
        paths.agent_applied,
        paths.agent_log,
    ]
    for build in builders:
        with pytest.raises(InvalidName):
            build(name)


@pytest.mark.parametrize("name", ["a", "alpha", "a-1", "x" * 31, "worker-7b"])
def test_good_names(name: str, tmp_path: Path) -> None:
    assert validate_agent_name(name) == name
    paths = HivePaths(tmp_path / "state", tmp_path / "run")
    assert paths.agent_socket(name).is_relative_to(tmp_path / "run")
    assert paths.agent_applied(name).is_relative_to(tmp_path / "state")


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidName, match="string"):
        validate_agent_name(5)


def test_recipients_include_manager_operator_and_broadcast() -> None:
    for name in ("manager", "operator", "*", "alpha"):
        assert validate_recipient(name) == name
    with pytest.raises(InvalidName):
        validate_recipient("system")


def test_ensure_agent_dirs_modes(tmp_path: Path) -> None:
    paths = HivePaths(tmp_path / "state", tmp_path / "run")
    paths.ensure_daemon_dirs()
    paths.ensure_agent_dirs("alpha")
    assert (paths.agent_runtime("alpha").stat().st_mode & 0o777) == 0o751
    assert (paths.agent_claude("alpha").stat().st_mode & 0o777) == 0o700
    assert (paths.state_dir.stat().st_mode & 0o777) == 0o700
    assert paths.kept_state_names() == ["alpha"]
