"""The daemon's settings: one attrs `Config`, layered from defaults, a TOML file, `HIVE_TRIO_*` env, flags.

Later layers win. Unknown keys and wrong types are refused with the key named, so a typo in a config
file is an error at start, not a silently ignored setting. It must never start anything.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import attrs
import cattrs

from hive_trio.records import describe_error
from hive_trio.rules.federation import FederationConfig
from hive_trio.rules.snapshot_budget import DEFAULT_SNAPSHOT_BUDGET

Backend = Literal["process", "nixos-container"]
Synchronous = Literal["FULL", "NORMAL", "EXTRA", "OFF"]

ENV_PREFIX: Final = "HIVE_TRIO_"
DEFAULT_DASHBOARD_PORT: Final = 7847


def python_module_command(module: str, python: str = sys.executable) -> str:
    """A shell command running `module` with this very interpreter, so a venv works without being on PATH."""
    return f"exec {shlex.quote(python)} -m {module}"


# What a plain `hive-trio daemon` runs for each agent: the real-agent harness (Claude), never an example
# (docs/DECISIONS.md, "The default agent command"). `hive-trio up` and tests ask for the examples
# explicitly (`hive_trio.examples.up.example_agent_command`).
DEFAULT_AGENT_COMMAND: Final = f"{python_module_command('hive_trio')} agent --runtime claude"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/hive-trio")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hive-trio"


def default_runtime_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/hive-trio")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "hive-trio"
    return Path(tempfile.gettempdir()) / f"hive-trio-{os.getuid()}"


@attrs.frozen(kw_only=True)
class Config:
    state_dir: Path = attrs.field(factory=default_state_dir, converter=Path)
    runtime_dir: Path = attrs.field(factory=default_runtime_dir, converter=Path)
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = DEFAULT_DASHBOARD_PORT
    # A bind that is not loopback must be asked for explicitly (SPEC §7).
    dashboard_public: bool = False
    dashboard_enabled: bool = True
    backend: Backend = "process"
    agent_command: str = DEFAULT_AGENT_COMMAND
    manager_command: str | None = None
    synchronous: Synchronous = "FULL"
    max_body_bytes: int = 64 * 1024
    max_frame_bytes: int = 1024 * 1024
    retention_days: float = 30.0
    max_recv_wait: float = 180.0
    restart_intensity: int = 5
    restart_period: float = 60.0
    stop_grace: float = 10.0
    shutdown_grace: float = 5.0
    operator_pronouns: str = "she/her"
    hyperhive_flake: str = "github:hyperhive/hyperhive"
    admin_group: str | None = "hive-admin"
    subscriber_buffer: int = 256
    event_ring: int = 4096
    agent_log_max_bytes: int = 8 * 1024 * 1024
    # Issue 10's daemon side (docs/AGENTS.md, "The daemon side").
    permission_ttl: float = 300.0
    transcript_max_rows: int = 2000
    transcript_retention_days: float = 14.0
    transcript_max_text: int = 16 * 1024
    daily_token_budget: int | None = None
    daily_usd_budget: float | None = None
    turn_failed_notice_interval: float = 300.0
    max_pending_reminders: int = 100
    # Seconds between checks whether a running agent's applied config or command moved (0: never).
    needs_update_interval: float = 300.0
    # All open agent logs together, rotations included; each file's limit shrinks to fit (agent_log).
    agent_logs_max_total_bytes: int = 512 * 1024 * 1024
    # Start over an empty (or missing) hive.db even though agents' state is kept (docs/RELIABILITY.md).
    fresh: bool = False
    # How often the WAL is checkpointed if written to, and truncated to 0 bytes if not (hive.db).
    checkpoint_interval: float = 30.0
    # Per unix socket (host.sock, each agent's); one more is refused with a line saying so.
    max_connections_per_socket: int = 256
    # host.sock closes a connection that asks nothing for this long (a status subscriber excepted).
    host_idle_timeout: float = 120.0
    # Text a dashboard snapshot may carry in approvals, questions and recent mail (rules.snapshot_budget).
    snapshot_budget_bytes: int = DEFAULT_SNAPSHOT_BUDGET
    # `[federation]`: hives on other hosts over NATS JetStream (docs/FEDERATION.md). Off by default.
    federation: FederationConfig = attrs.field(factory=FederationConfig)

    def __attrs_post_init__(self) -> None:
        positive = (
            "max_body_bytes",
            "max_frame_bytes",
            "subscriber_buffer",
            "event_ring",
            "restart_period",
            "permission_ttl",
            "transcript_max_rows",
            "transcript_retention_days",
            "transcript_max_text",
            "max_pending_reminders",
            "checkpoint_interval",
            "max_connections_per_socket",
            "host_idle_timeout",
            "snapshot_budget_bytes",
            "agent_logs_max_total_bytes",
        )
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be positive")
        if not 0 <= self.dashboard_port <= 65535:
            raise ConfigError(f"dashboard_port {self.dashboard_port} is not a TCP port")
        for key in ("daily_token_budget", "daily_usd_budget"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ConfigError(f"{key} must not be negative")
        if self.turn_failed_notice_interval < 0:
            raise ConfigError("turn_failed_notice_interval must not be negative")
        if self.restart_intensity < 0:
            raise ConfigError("restart_intensity must not be negative")


_FIELDS: Final = {a.name: a for a in attrs.fields(Config)}


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    """Env values are text; convert each by its field's type so `HIVE_TRIO_DASHBOARD_PORT=80` works."""
    out: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {key}")
        out[name] = _parse_text(name, raw)
    return out


def _parse_text(name: str, raw: str) -> Any:
    kind = str(_FIELDS[name].type)
    try:
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{name}: cannot read {raw!r} as {kind}") from None
    if "None" in kind and raw == "":
        return None
    return raw


def load_config(
    *,
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config from defaults, then `file` (TOML), then env, then `overrides` (flags)."""
    merged: dict[str, Any] = {}
    if file is not None:
        try:
            with open(file, "rb") as fh:
                merged.update(tomllib.load(fh))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from exc
        unknown = sorted(set(merged) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"config file {file}: unknown setting(s) {', '.join(unknown)}")
    merged.update(_env_layer(os.environ if env is None else env))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return _CONVERTER.structure(merged, Config)
    except ConfigError:
        raise
    except cattrs.BaseValidationError as exc:
        raise ConfigError(describe_error(exc)) from exc


def _structure_path(value: Any, _: type[Any]) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"expected a path, got {type(value).__name__}")
    return Path(value)


_CONVERTER: Final = cattrs.Converter(forbid_extra_keys=True)
_CONVERTER.register_structure_hook(Path, _structure_path)
