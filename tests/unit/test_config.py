from __future__ import annotations

from pathlib import Path

import pytest

from hive_trio.rules.config import Config, ConfigError, load_config


def test_defaults_follow_the_spec() -> None:
    cfg = load_config(env={})
    assert cfg.dashboard_host == "127.0.0.1"
    assert cfg.dashboard_port == 7847
    assert cfg.backend == "process"
    assert cfg.synchronous == "FULL"
    assert cfg.max_body_bytes == 64 * 1024
    assert cfg.max_frame_bytes == 1024 * 1024
    assert cfg.retention_days == 30


def test_layers_file_then_env_then_flags(tmp_path: Path) -> None:
    file = tmp_path / "hive.toml"
    file.write_text('dashboard_port = 9000\nsynchronous = "NORMAL"\nstate_dir = "/srv/hive"\n')
    cfg = load_config(file=file, env={})
    assert (cfg.dashboard_port, cfg.synchronous, cfg.state_dir) == (9000, "NORMAL", Path("/srv/hive"))
    cfg = load_config(file=file, env={"HIVE_TRIO_DASHBOARD_PORT": "9100", "HIVE_TRIO_DASHBOARD_PUBLIC": "yes"})
    assert cfg.dashboard_port == 9100 and cfg.dashboard_public is True
    cfg = load_config(file=file, env={"HIVE_TRIO_DASHBOARD_PORT": "9100"}, overrides={"dashboard_port": 9200})
    assert cfg.dashboard_port == 9200
    assert cfg.synchronous == "NORMAL"


@pytest.mark.parametrize(
    ("file_text", "env", "fragment"),
    [
        ("dashbord_port = 1\n", {}, "dashbord_port"),
        ("dashboard_port = 'x'\n", {}, "dashboard_port"),
        ("", {"HIVE_TRIO_NOPE": "1"}, "HIVE_TRIO_NOPE"),
        ("", {"HIVE_TRIO_DASHBOARD_PORT": "eighty"}, "dashboard_port"),
        ("", {"HIVE_TRIO_SYNCHRONOUS": "SOMETIMES"}, "synchronous"),
        ("dashboard_port = 70000\n", {}, "dashboard_port"),
        ("not toml [", {}, "TOML"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, file_text: str, env: dict[str, str], fragment: str) -> None:
    file = tmp_path / "hive.toml"
    file.write_text(file_text)
    with pytest.raises(ConfigError) as info:
        load_config(file=file, env=env)
    assert fragment in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(file=tmp_path / "missing.toml", env={})


def test_config_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Config("/tmp/x")  # type: ignore[misc]
