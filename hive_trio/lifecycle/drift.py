"""`needs_update`: whether a running agent still runs what it would be started with now.

At each launch the lifecycle records what the run was started from: the applied repo's `main` and the
backend's resolved command (for the process backend, the rendered command line and its `[env]`). A check
compares that with the same two read again; any difference sets `needs_update` (and tells the manager
once, hyperhive's `needs_update` HelperEvent), and the next launch (a restart or a rebuild) clears it.
hyperhive sets it when the hyperhive flake moved past what a container was built from; here what moves
is the applied config or the command. It never starts or stops anything.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

import attrs

from hive_trio.errors import HiveError
from hive_trio.lifecycle import config_repos
from hive_trio.lifecycle.config_repos import MAIN
from hive_trio.records import HelperNeedsUpdate

if TYPE_CHECKING:
    from hive_trio.core.coordinator import Coordinator
    from hive_trio.lifecycle.backends import Backend, Unit

log = logging.getLogger(__name__)


@attrs.frozen
class StartedFrom:
    applied_sha: str | None
    command: str | None


class ConfigDrift:
    def __init__(self, coord: Coordinator, backend: Backend) -> None:
        self.coord = coord
        self.backend = backend
        self._started: dict[str, StartedFrom] = {}

    async def current(self, unit: Unit) -> StartedFrom:
        sha: str | None = None
        if unit.applied is not None and config_repos.is_repo(unit.applied):
            sha = await config_repos.rev_parse(unit.applied, MAIN)
        resolve: Any = getattr(self.backend, "resolved_command", None)
        command = None
        if resolve is not None:
            text: str = await resolve(unit)
            command = hashlib.sha256(text.encode()).hexdigest()
        return StartedFrom(applied_sha=sha, command=command)

    async def launched(self, unit: Unit) -> None:
        """A run of `unit` just started (or its config was applied in place): it is up to date."""
        try:
            self._started[unit.name] = await self.current(unit)
        except HiveError:
            log.warning("could not record what %s was started from", unit.name, exc_info=True)
            self._started.pop(unit.name, None)
            return
        if unit.is_manager:
            return
        record = await self.coord.find_agent(unit.name)
        if record is not None and record.needs_update:
            await self.coord.set_needs_update(unit.name, False)
            await self.coord.publish_status(unit.name)

    def stopped(self, name: str) -> None:
        self._started.pop(name, None)

    async def check(self, unit: Unit) -> bool:
        """Set `needs_update` if the run's config or command moved since it started; True if it did."""
        started = self._started.get(unit.name)
        if started is None or unit.is_manager:
            return False
        try:
            now = await self.current(unit)
        except HiveError:
            log.warning("could not check whether %s needs an update", unit.name, exc_info=True)
            return False
        stale = now != started
        record = await self.coord.find_agent(unit.name)
        if record is None or record.needs_update == stale:
            return stale
        await self.coord.set_needs_update(unit.name, stale)
        if stale:
            await self.coord.notify_manager(HelperNeedsUpdate(agent=unit.name))
        await self.coord.publish_status(unit.name)
        return stale


__all__ = ["ConfigDrift", "StartedFrom"]
