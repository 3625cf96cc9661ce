"""`needs_update`: set when a running agent's applied config or command moved since it started; cleared by a restart."""

from __future__ import annotations

from pathlib import Path

from lifecycle_support import commit_file, helper_events, lifecycle_config

from hive_trio.daemon import open_hive
from hive_trio.lifecycle import Lifecycle


async def needs_update(coord: object, name: str) -> bool:
    rows = await coord.agent_statuses([name])  # type: ignore[attr-defined]
    return bool(rows[0].needs_update)


async def test_a_moved_config_sets_needs_update_once_and_a_restart_clears_it(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        lifecycle = coord.ops
        assert isinstance(lifecycle, Lifecycle)
        await coord.ops.spawn("alpha")
        await coord.ops.spawn("beta")
        assert await lifecycle.check_needs_update() == []
        assert not await needs_update(coord, "alpha")
        # The applied config moves under a running agent (by hand, say): its command changes.
        applied = coord.paths.agent_applied("alpha")
        toml = '[agent]\ncommand = "exec sleep 600"\n'
        await commit_file(applied, "agent.toml", toml, "a new command")
        assert await lifecycle.check_needs_update() == ["alpha"]
        assert await lifecycle.check_needs_update() == ["alpha"]
        assert await needs_update(coord, "alpha") and not await needs_update(coord, "beta")
        events = [e for e in await helper_events(coord, "manager") if e["event"] == "needs_update"]
        assert events == [{"event": "needs_update", "agent": "alpha"}]  # told once
        await coord.ops.restart("alpha")
        assert not await needs_update(coord, "alpha")
        assert await lifecycle.check_needs_update() == []


async def test_a_stopped_agent_is_never_stale(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        lifecycle = coord.ops
        assert isinstance(lifecycle, Lifecycle)
        await coord.ops.spawn("alpha")
        await coord.ops.stop("alpha")
        await commit_file(coord.paths.agent_applied("alpha"), "agent.toml", "[agent]\n", "x")
        assert await lifecycle.check_needs_update(["alpha"]) == []
        assert not await needs_update(coord, "alpha")
