"""Which hive and which config a `hive-trio` invocation means: flags, env and file, and `up`'s own hive.

`up` keeps its hive in `./hive-state` with the sockets under it (or under /tmp when those paths would be
too long for a unix socket); operator commands run from that directory find it the way git finds `.git`.
`examples.up` imports this module for the same defaults, so it must never import the rest of the CLI,
the examples or the daemon.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Final

from hive_trio.rules.names import MAX_NAME_LENGTH
from hive_trio.rules.paths import HivePaths

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1  # the daemon (or the config) said no
EXIT_USAGE: Final = 2  # argparse's own
EXIT_NOT_RUNNING: Final = 3
EXIT_PERMISSION: Final = 4

UNIX_PATH_MAX: Final = 107
# Where `hive-trio up` keeps its hive, relative to the directory it was started in.
UP_STATE_DIR: Final = Path("hive-state")


class CliError(Exception):
    """A refusal the CLI prints as one line, exiting with `code`."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


def _dashboard_overrides(value: str | None) -> dict[str, Any]:
    if value is None:
        return {}
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise CliError(f"--dashboard wants HOST:PORT, got {value!r}", EXIT_USAGE)
    return {"dashboard_host": host.strip("[]"), "dashboard_port": int(port)}


def load_cli_config(args: argparse.Namespace, **defaults: Any) -> Any:
    """The `Config` for this invocation: file, env, then flags (flags given on the command line win)."""
    from hive_trio.rules.config import ConfigError, load_config

    overrides: dict[str, Any] = dict(defaults)
    for flag in ("state_dir", "runtime_dir", "agent_command"):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[flag] = value
    overrides.update(_dashboard_overrides(getattr(args, "dashboard", None)))
    config_file = getattr(args, "config", None)
    try:
        return load_config(file=Path(config_file) if config_file else None, overrides=overrides)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def discovered_hive(args: argparse.Namespace) -> dict[str, Any]:
    """The hive `hive-trio up` runs in the current directory, when nothing else names one.

    As git finds `.git`: with no `--runtime-dir`, `--state-dir` or `--config`, and no `HIVE_TRIO_*_DIR`
    in the environment, a live `./hive-state` is the hive the operator means.
    """
    if any(getattr(args, flag, None) for flag in ("runtime_dir", "state_dir", "config")):
        return {}
    if "HIVE_TRIO_RUNTIME_DIR" in os.environ or "HIVE_TRIO_STATE_DIR" in os.environ:
        return {}
    state_dir = UP_STATE_DIR.resolve()
    runtime_dir = embedded_runtime_dir(state_dir)
    paths = HivePaths(state_dir, runtime_dir)
    # A stopped `up` hive is still the one meant: commands then say *it* is not running (issue 11),
    # rather than that the system default /run/hive-trio is missing.
    if paths.host_socket.exists() or paths.db.exists():
        return {"state_dir": state_dir, "runtime_dir": runtime_dir}
    return {}


def not_running_reason(args: argparse.Namespace, exc: Exception) -> str:
    """What to say when host.sock does not answer: name `up`'s hive when that is the one meant."""
    if discovered_hive(args):
        return f"the hive in ./{UP_STATE_DIR} is not running (start it with `hive-trio up`)"
    return str(exc)


def embedded_runtime_dir(state_dir: Path) -> Path:
    """`up`'s runtime dir: under the state dir, or a private /tmp dir if sockets there would be too long."""
    preferred = state_dir / "run"
    longest_socket = HivePaths(state_dir, preferred).agent_socket("a" * MAX_NAME_LENGTH)
    if len(str(longest_socket)) <= UNIX_PATH_MAX:
        return preferred
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"hive-trio-{os.getuid()}-{digest}"


__all__ = [
    "EXIT_NOT_RUNNING",
    "EXIT_OK",
    "EXIT_PERMISSION",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "UP_STATE_DIR",
    "CliError",
    "discovered_hive",
    "embedded_runtime_dir",
    "load_cli_config",
    "not_running_reason",
]
