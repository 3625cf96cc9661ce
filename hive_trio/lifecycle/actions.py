"""The operator's (and the manager's) verbs on one agent: spawn, start, stop, restart, rebuild, destroy, purge.

hive-c0re's `actions`. Each runs under the agent's transient (so a second one is refused, and the operator
can cancel it), records intent through the coordinator first, then asks the backend; every start goes
through `Supervisor._bring_up`. Kept from hyperhive: a HelperEvent to the manager for every change, and
`kick_agent` after each start, restart and rebuild. It never parses a wire or serves a socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from pathlib import Path

import trio

from hive_trio.errors import Conflict, NotFound
from hive_trio.lifecycle import config_repos
from hive_trio.lifecycle.backends.agent_log import rotated_path
from hive_trio.lifecycle.bare import DESTROYED_NOTE
from hive_trio.lifecycle.config_repos import MAIN
from hive_trio.lifecycle.supervisor import RUNNING, STOPPED, Supervisor
from hive_trio.records import (
    MANAGER_AGENT,
    AgentRecord,
    HelperDestroyed,
    HelperKilled,
    HelperRebuilt,
    HelperSpawned,
    TransientKind,
)
from hive_trio.rules.names import validate_agent_name
from hive_trio.rules.paths import HivePaths

log = logging.getLogger(__name__)


class LifecycleActions(Supervisor):
    """The supervisor plus the verbs the adapters call through `coord.ops`."""

    async def spawn(self, name: str, *, parent: str | None = None) -> AgentRecord:
        validate_agent_name(name)
        self.backend.check_name(name)
        self.paths.check_socket_path(name)
        if parent is not None and parent != MANAGER_AGENT:
            validate_agent_name(parent)
        if await self.coord.find_agent(name) is not None:
            raise Conflict(f"agent {name!r} already exists")
        with self._action(name, TransientKind.SPAWNING):
            await self.coord.record_spawn(name, parent=parent)
            async with self._failure_recorded(name, "spawn failed", interrupted="spawn was interrupted"):
                sha = await self._prepare_repos(name)
                await self.coord.set_desired(name, RUNNING, deployed_sha=sha)
                await self.coord.register_agent(name)
                await self.backend.build(self.unit(name), rev=sha)
                await self._bring_up(name, kick=f"You were spawned as {name}.")
        await self.coord.notify_manager(HelperSpawned(agent=name))
        return await self.coord.require_agent(name)

    async def start(self, name: str) -> None:
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.STARTING):
            await self.coord.set_desired(name, RUNNING)
            if self.run_of(name) is not None:
                self._policy(name).reset()
                await self.coord.publish_status(name)
                return  # already running: starting is idempotent, as `systemctl start` is
            async with self._failure_recorded(name, "start failed"):
                await self._bring_up(name, kick="You were started by the operator.")

    async def stop(self, name: str, *, graceful: bool = True) -> None:
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.STOPPING):
            # Recorded first: an operator stop is never undone by a crash restart or a daemon restart. Shielded
            # (one short write), so a stop cancelled on its way has `stopped` recorded for certain; `_halt` then
            # runs even in the cancelled scope, where the wait for exit ends at once and the stop is forced.
            # Before, a stop cancelled ahead of its SIGTERM left the process alive with desired = stopped.
            with trio.CancelScope(shield=True):
                await self.coord.set_desired(name, STOPPED)
            await self._halt(name, grace=self.config.stop_grace if graceful else 0.0)
        await self.coord.notify_manager(HelperKilled(agent=name))

    async def restart(self, name: str) -> None:
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.RESTARTING):
            await self.coord.set_desired(name, RUNNING)
            await self._halt(name, grace=self.config.stop_grace)
            async with self._failure_recorded(name, "restart failed"):
                await self._bring_up(name, kick="You were restarted by the operator.")

    async def rebuild(self, name: str) -> None:
        """Rebuild from the applied repo's `main`; a running agent picks the result up (restarted if needed)."""
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.REBUILDING):
            sha = await config_repos.rev_parse(self.paths.agent_applied(name), MAIN)
            await self.backend.build(self.unit(name), rev=sha)
            await self.coord.record_deployed(name, sha)
            await self._refresh(name, kick="You were rebuilt from your applied config.")
        await self._announce_rebuilt(HelperRebuilt(agent=name, sha=sha, tag=None))

    async def _announce_rebuilt(self, event: HelperRebuilt) -> None:
        """The manager hears of every rebuild; the agent too, since its own config changed."""
        await self.coord.notify_manager(event)
        await self.coord.notify_agent(event.agent, event)

    async def _refresh(self, name: str, *, kick: str) -> None:
        """After a successful build: a running agent is restarted onto it (or reloaded in place)."""
        if self.run_of(name) is None:
            return
        if self.backend.applies_live:
            await self.drift.launched(self.unit(name))  # applied in place: the run is up to date
            await self.coord.kick_agent(name, kick)
            return
        await self._halt(name, grace=self.config.stop_grace)
        async with self._failure_recorded(name, "could not start after the rebuild"):
            await self._launch(name, kick=kick)

    async def destroy(self, name: str, *, purge: bool = False) -> None:
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.DESTROYING):
            await self._halt(name, grace=self.config.stop_grace)
            await self.backend.remove(self.unit(name))
            self.coord.unregister_agent(name)
            await self.coord.forget_agent(name, note=DESTROYED_NOTE)
            self._policies.pop(name, None)
            if purge:
                await self._purge_dirs(name)
        await self.coord.publish_status(name)  # the row is gone: `container_removed`
        await self.coord.notify_manager(HelperDestroyed(agent=name))

    async def purge_tombstone(self, name: str) -> None:
        validate_agent_name(name)
        if await self.coord.find_agent(name) is not None:
            raise Conflict(f"{name!r} is a live agent; destroy it first")
        if name not in self.coord.kept_state_names():
            raise NotFound(f"there is no tombstone named {name!r}")
        with self._action(name, TransientKind.DESTROYING):
            await self._purge_dirs(name)

    async def _purge_dirs(self, name: str) -> None:
        """Purge `name`: its mail is closed, then its dirs are renamed out of the way, then deleted.

        hyperhive deletes in place, so a daemon killed mid-way left a half-deleted repo that broke the next
        spawn of that name. Here a `.purge` marker goes into the state root first; the applied repo, the
        runtime dir and the logs are renamed into `.trash-*` siblings, and the state root (the tombstone
        itself) last; only then is the trash deleted. A purge cut off anywhere is finished by
        `finish_interrupted_purges` at the next start: a marked tombstone is purged again, and trash is
        deleted. Its mail is closed first (`Coordinator.close_inbox`): a stranger who later takes the
        name starts with an empty inbox. A tombstone brought back without purge keeps its mail.
        """
        await self.coord.close_inbox(name)
        await trio.to_thread.run_sync(purge_agent_paths, self.paths, name)

    async def finish_interrupted_purges(self) -> list[str]:
        """Daemon start: finish every purge a previous daemon was cut off in (see `_purge_dirs`)."""
        marked = await trio.to_thread.run_sync(interrupted_purges, self.paths)
        for name in marked:
            if await self.coord.find_agent(name) is None:
                log.warning("finishing the purge of %s, cut off by the daemon's end", name)
                await self._purge_dirs(name)
        await trio.to_thread.run_sync(empty_trash, self.paths)
        return marked


PURGE_MARKER = ".purge"
TRASH_PREFIX = ".trash-"


def _trash(path: Path) -> None:
    """Rename `path` (a dir or a file) to a fresh `.trash-*` sibling; renaming never follows a link."""
    try:
        os.rename(path, path.with_name(f"{TRASH_PREFIX}{path.name}-{secrets.token_hex(4)}"))
    except FileNotFoundError:
        pass


def purge_agent_paths(paths: HivePaths, name: str) -> None:
    state_root = paths.agent_state_root(name)
    if state_root.is_dir() and not state_root.is_symlink():
        os.close(os.open(state_root / PURGE_MARKER, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    for path in (
        paths.agent_applied(name),
        paths.agent_runtime(name),
        paths.agent_log(name),
        rotated_path(paths.agent_log(name)),
        state_root,  # last: until it goes, the name is a (marked) tombstone
    ):
        _trash(path)
    empty_trash(paths)


def interrupted_purges(paths: HivePaths) -> list[str]:
    return [n for n in paths.kept_state_names() if (paths.agent_state_root(n) / PURGE_MARKER).exists()]


def empty_trash(paths: HivePaths) -> None:
    for root in (paths.agents_state_root, paths.applied_root, paths.runtime_dir / "agents", paths.logs_root):
        try:
            entries = list(os.scandir(root))
        except FileNotFoundError:
            continue
        for entry in entries:
            if not entry.name.startswith(TRASH_PREFIX):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


__all__ = ["LifecycleActions"]
