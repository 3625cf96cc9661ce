"""Where agents run: one small interface, two backends (`process`, `nixos-container`).

The lifecycle layer decides *what* should run and when; a backend only knows *how* to build, start,
watch and stop one unit (an agent or the manager). A backend is handed every path it needs in a
`Unit` (computed by the lifecycle from `HivePaths`); it never opens the database, never sends a
message, and never decides to restart anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

import attrs
import trio

from hive_trio.records import MANAGER_AGENT


@attrs.frozen(kw_only=True)
class Unit:
    """Everything a backend needs to know about one agent (or the manager), paths already validated."""

    name: str
    socket: Path
    socket_dir: Path
    notes: Path
    claude: Path
    log: Path
    pid_record: Path
    # The applied config repo the agent is built from; None for the manager.
    applied: Path | None = None
    # The manager's view of every agent's config repo (hyperhive bind-mounts it as /agents).
    agents_dir: Path | None = None

    @property
    def is_manager(self) -> bool:
        return self.name == MANAGER_AGENT


class Run(Protocol):
    """One start of a unit. `exited` is set exactly once, however it ends; `stop` is idempotent."""

    exited: trio.Event

    @property
    def exit_reason(self) -> str:
        """How it ended, for a person: `exited with status 3`, `was killed by SIGKILL`, `stopped`."""
        ...

    @property
    def exited_cleanly(self) -> bool:
        """It ended on its own with success (status 0): a stop of its own, never a crash."""
        ...

    @property
    def pid(self) -> int | None: ...

    async def stop(self, *, grace: float) -> None:
        """Ask it to stop, force it after `grace` seconds, and return once it is gone.

        Cancelling the call forces the stop at once; it still returns only when the unit is gone.
        """
        ...


# Awaited by a run's own watching task once `exited` is set (the supervisor judges the exit there), so
# watching a run takes one task, not a second one parked on `exited`.
OnExit = Callable[[Run], Awaitable[None]]


class Backend(Protocol):
    kind: str
    # True when a build changes the running unit in place (nixos-container update reloads it);
    # False when the unit must be restarted to pick the new config up (a process).
    applies_live: bool
    # True when units outlive the daemon (containers are systemd units); they are then left running
    # at shutdown and adopted again at start, instead of being stopped.
    units_outlive_daemon: bool

    def check_name(self, name: str) -> None:
        """Refuse (`InvalidRequest`) a valid agent name this backend cannot host."""
        ...

    def starter_files(self, unit: Unit) -> Mapping[str, str]:
        """The initial content of a new agent's config repo."""
        ...

    async def build(self, unit: Unit, *, rev: str, ref: str = "main") -> None:
        """Create or update the unit from its applied repo at commit `rev` (reachable from `ref`).

        Raises `LifecycleFailed` with the reason when it cannot; the running unit is then unchanged.
        """
        ...

    async def launch(self, unit: Unit, *, nursery: trio.Nursery, on_exit: OnExit | None = None) -> Run:
        """Start the unit from its applied repo's `main`; its watcher task runs in `nursery`, and awaits
        `on_exit(run)` once the run has exited (not when that task is cancelled)."""
        ...

    async def adopt(self, unit: Unit, *, nursery: trio.Nursery, on_exit: OnExit | None = None) -> Run | None:
        """At daemon start: the unit's current run if it survived the daemon (watched as `launch`'s), else None."""
        ...

    async def reap_orphans(self, *, grace: float) -> list[str]:
        """At daemon start: stop whatever a previous daemon left running that cannot be adopted."""
        ...

    async def remove(self, unit: Unit) -> None:
        """Destroy the unit's runtime (not its state dirs, which the lifecycle keeps or purges)."""
        ...


__all__ = ["Backend", "OnExit", "Run", "Unit"]
