"""Where hive_trio keeps or deliberately changes hive-c0re's behaviour, found in review (issue 10)."""

from __future__ import annotations

from contextlib import closing

import apsw
import attrs

from hive_trio.core.coordinator import Coordinator, open_coordinator
from hive_trio.lifecycle.bare import BareLifecycle
from hive_trio.records import HelperContainerCrash
from hive_trio.rules.config import Config
from hive_trio.store.broker import MANAGER_NOTICE_BACKLOG


async def test_the_managers_restart_note_points_at_its_own_notes_dir(coordinator: Coordinator) -> None:
    await coordinator.kick_agent("manager", "The hive daemon started.")
    [kick] = await coordinator.recv("manager")
    assert str(coordinator.paths.manager_notes) in kick.body
    assert f"{coordinator.paths.state_dir} " not in kick.body


async def test_the_note_says_by_the_operator_only_when_it_was(coordinator: Coordinator) -> None:
    await coordinator.record_spawn("alpha")
    await coordinator.kick_agent("alpha", "You were restarted after a crash.")
    [kick] = await coordinator.recv("alpha")
    assert "operator" not in kick.body and "after a crash" in kick.body


async def test_container_agents_are_told_state_not_a_host_path(config: Config) -> None:
    async with open_coordinator(attrs.evolve(config, backend="nixos-container"), lifecycle=BareLifecycle) as coord:
        await coord.record_spawn("alpha")
        await coord.kick_agent("alpha", "You were restarted by the operator.")
        [kick] = await coord.recv("alpha")
        assert "/state/" in kick.body and str(coord.paths.state_dir) not in kick.body


async def test_a_broadcast_leaves_out_its_sender_on_purpose(coordinator: Coordinator) -> None:
    # hive-c0re's broadcast_send includes the sender; ours does not (docs/DECISIONS.md): the echo would
    # cost the sender a whole turn of its model to learn what it just wrote.
    for name in ("alpha", "beta"):
        await coordinator.record_spawn(name)
    await coordinator.send("alpha", "*", "standup")
    assert await coordinator.inbox_depth("alpha") == 0
    assert await coordinator.inbox_depth("beta") == 1


async def test_unread_notices_do_not_pile_up_in_the_managers_inbox(coordinator: Coordinator) -> None:
    await coordinator.record_spawn("alpha")
    [kept] = await coordinator.send("alpha", "manager", "a message from an agent is never trimmed")
    for i in range(MANAGER_NOTICE_BACKLOG + 20):
        await coordinator.notify_manager(HelperContainerCrash(agent="alpha", note=f"crash {i}"))
    assert await coordinator.inbox_depth("manager") == MANAGER_NOTICE_BACKLOG + 1
    first = await coordinator.recv("manager", limit=2)
    assert first[0].sender == "alpha"
    assert f"crash {20}" in first[1].body  # the oldest 20 were superseded
    # The superseded ones are still on the record (acked, for the vacuum to age out), not deleted.
    with closing(apsw.Connection(str(coordinator.paths.db), flags=apsw.SQLITE_OPEN_READONLY)) as db:
        row = db.execute("SELECT body, acked_at FROM messages WHERE id = ?", (kept.id + 1,)).fetchone()
    assert row is not None and "crash 0" in row[0] and row[1] is not None
