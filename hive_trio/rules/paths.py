"""Where everything lives on disk, derived from a validated name (SPEC §2).

hive-c0re's `Coordinator::agent_dir` and friends format a path from whatever string they are given;
every builder here first passes the name through `validate_agent_name`, so `../x` can never escape
`state_dir` or `runtime_dir`. This module computes paths; creating them is `ensure_*`'s job only.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from hive_trio.errors import InvalidRequest
from hive_trio.records import MANAGER_AGENT
from hive_trio.rules.names import is_agent_name, validate_agent_name
from hive_trio.rules.strict_dirs import ensure_base_dir, ensure_tree, refuse_link

# sun_path is 108 bytes on Linux, with a terminating NUL.
UNIX_PATH_MAX = 107
RUNTIME_DIR_MODE = 0o751
PRIVATE_DIR_MODE = 0o700
SOCKET_MODE = 0o660
TOKEN_MODE = 0o600


@attrs.frozen
class HivePaths:
    state_dir: Path
    runtime_dir: Path

    # ------------------------------------------------------------------ daemon-wide
    @property
    def db(self) -> Path:
        return self.state_dir / "hive.db"

    @property
    def lock(self) -> Path:
        return self.state_dir / "hive.lock"

    @property
    def dashboard_token(self) -> Path:
        return self.state_dir / "dashboard.token"

    @property
    def dashboard_url_file(self) -> Path:
        """Where the running daemon writes the dashboard's bound URL, for `dashboard-url`."""
        return self.runtime_dir / "dashboard.url"

    @property
    def host_socket(self) -> Path:
        return self.runtime_dir / "host.sock"

    @property
    def manager_runtime(self) -> Path:
        return self.runtime_dir / "manager"

    @property
    def manager_socket(self) -> Path:
        return self.manager_runtime / "mcp.sock"

    @property
    def manager_state_root(self) -> Path:
        """The manager's own durable dir (beside `agents/`, so it is never a tombstone)."""
        return self.state_dir / "manager"

    @property
    def manager_notes(self) -> Path:
        return self.manager_state_root / "state"

    @property
    def manager_claude(self) -> Path:
        return self.manager_state_root / "claude"

    @property
    def manager_log(self) -> Path:
        return self.logs_root / "manager.log"

    @property
    def pids_root(self) -> Path:
        """Pid records of supervised processes; volatile like the sockets, read by reconcile."""
        return self.runtime_dir / "pids"

    def pid_record(self, name: str) -> Path:
        """The pid record of an agent's (or the manager's) process."""
        if name != MANAGER_AGENT:
            validate_agent_name(name)
        return self.pids_root / f"{name}.json"

    @property
    def agents_state_root(self) -> Path:
        return self.state_dir / "agents"

    @property
    def applied_root(self) -> Path:
        return self.state_dir / "applied"

    @property
    def logs_root(self) -> Path:
        return self.state_dir / "logs"

    # ------------------------------------------------------------------ per agent
    def agent_runtime(self, name: str) -> Path:
        return self.runtime_dir / "agents" / validate_agent_name(name)

    def agent_socket(self, name: str) -> Path:
        return self.agent_runtime(name) / "mcp.sock"

    def check_socket_path(self, name: str) -> None:
        """Refuse (`InvalidRequest`) a name whose socket path would not fit a unix socket address.

        Checked before anything is recorded: a spawn that fails at bind() once left a failed roster row.
        """
        path = self.agent_socket(name)
        if len(os.fsencode(path)) > UNIX_PATH_MAX:
            raise InvalidRequest(
                f"agent {name!r} cannot be spawned here: its socket path {path} is {len(os.fsencode(path))} bytes, "
                f"over the {UNIX_PATH_MAX} a unix socket allows; use a shorter name or a shorter --runtime-dir"
            )

    def agent_state_root(self, name: str) -> Path:
        return self.agents_state_root / validate_agent_name(name)

    def agent_config(self, name: str) -> Path:
        """The manager-editable proposed config repo."""
        return self.agent_state_root(name) / "config"

    def agent_notes(self, name: str) -> Path:
        """The agent's own durable notes; survives destroy (the agent's `/state`)."""
        return self.agent_state_root(name) / "state"

    def agent_claude(self, name: str) -> Path:
        """The agent's own Claude credentials; never shared, because refresh tokens rotate."""
        return self.agent_state_root(name) / "claude"

    def agent_applied(self, name: str) -> Path:
        """The authoritative config repo the daemon builds from; only the daemon writes here."""
        return self.applied_root / validate_agent_name(name)

    def agent_log(self, name: str) -> Path:
        return self.logs_root / f"{validate_agent_name(name)}.log"

    # ------------------------------------------------------------------ creation
    # Every directory is made through `strict_dirs`: the two roots must be the daemon's own, and nothing
    # below them is ever made, chmodded or entered through a symbolic link (docs/RELIABILITY.md).
    def ensure_daemon_dirs(self) -> None:
        ensure_base_dir(self.state_dir, PRIVATE_DIR_MODE, what="state dir", flag="--state-dir")
        ensure_base_dir(self.runtime_dir, RUNTIME_DIR_MODE, what="runtime dir", flag="--runtime-dir")
        ensure_tree(self.runtime_dir, ("agents",), RUNTIME_DIR_MODE)
        ensure_tree(self.runtime_dir, ("manager",), RUNTIME_DIR_MODE)
        ensure_tree(self.runtime_dir, ("pids",), PRIVATE_DIR_MODE)
        for part in ("agents", "applied", "logs"):
            ensure_tree(self.state_dir, (part,), PRIVATE_DIR_MODE)

    def ensure_agent_dirs(self, name: str) -> None:
        name = validate_agent_name(name)
        ensure_tree(self.runtime_dir, ("agents", name), RUNTIME_DIR_MODE)
        ensure_tree(self.state_dir, ("agents", name, "state"), PRIVATE_DIR_MODE)
        ensure_tree(self.state_dir, ("agents", name, "claude"), PRIVATE_DIR_MODE)
        # git makes these two repos later; a link planted at either is refused before git can follow it.
        refuse_link(self.agent_config(name))
        refuse_link(self.agent_applied(name))
        for path in (self.agent_socket(name), self.agent_log(name), self.pid_record(name)):
            refuse_link(path)

    def ensure_manager_dirs(self) -> None:
        ensure_tree(self.state_dir, ("manager", "state"), PRIVATE_DIR_MODE)
        ensure_tree(self.state_dir, ("manager", "claude"), PRIVATE_DIR_MODE)

    def kept_with_repos(self) -> list[str]:
        """Every name with anything kept on disk (state dir or applied repo): what a lost hive.db would orphan."""
        try:
            applied = [e.name for e in os.scandir(self.applied_root) if not e.name.startswith(".")]
        except FileNotFoundError:
            applied = []
        return sorted(set(self.kept_state_names()) | set(applied))

    def kept_state_names(self) -> list[str]:
        """Names with a state dir: live agents and destroyed-but-kept tombstones alike."""
        try:
            entries = list(os.scandir(self.agents_state_root))
        except FileNotFoundError:
            return []
        # `.trash-*` (a purge in progress) and anything else that is not an agent name is not a tombstone.
        return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False) and is_agent_name(e.name))
