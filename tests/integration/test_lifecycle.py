"""Lifecycle operations on real child processes, through `open_hive` as the daemon assembles them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio
from lifecycle_support import (
    ENV_AGENT,
    commit_file,
    drain,
    eventually,
    helper_events,
    kicks,
    lifecycle_config,
    pid_alive,
    read_env,
)

from hive_trio.core.coordinator import Coordinator
from hive_trio.daemon import open_hive
from hive_trio.errors import Busy, Conflict, InvalidRequest, LifecycleFailed, NotFound
from hive_trio.lifecycle import ActionCancelled, Lifecycle
from hive_trio.lifecycle.config_repos import rev_parse
from hive_trio.records import (
    OPERATOR,
    ApprovalKind,
    ApprovalStatus,
    ContainerRemovedEvent,
    ContainerStateChangedEvent,
    TransientClearedEvent,
    TransientKind,
    TransientSetEvent,
)


def lifecycle_of(hive_coord: object) -> Lifecycle:
    lifecycle = getattr(hive_coord, "ops", None)
    assert isinstance(lifecycle, Lifecycle)
    return lifecycle


def pid_of(lifecycle: Lifecycle, name: str) -> int:
    run = lifecycle.run_of(name)
    assert run is not None and run.pid is not None
    return run.pid


async def test_spawn_runs_the_agent_with_its_environment(short_tmp: Path) -> None:
    config = lifecycle_config(short_tmp, operator_pronouns="they/them")
    async with open_hive(config) as hive:
        coord = hive.coordinator
        lifecycle = lifecycle_of(coord)
        with coord.subscribe() as events:
            record = await coord.ops.spawn("alpha")
            assert record.desired == "running" and not record.failed
            paths = coord.paths
            env = await eventually(
                lambda: read_env(paths.agent_notes("alpha") / "env.txt"),
                watch=[paths.agent_notes("alpha")],
                what="the env dump",
            )
            seen = drain(events)
        assert env["HIVE_AGENT"] == "alpha"
        assert env["HIVE_SOCKET"] == str(paths.agent_socket("alpha"))
        assert env["HIVE_STATE_DIR"] == str(paths.agent_notes("alpha"))
        assert env["HIVE_OPERATOR_PRONOUNS"] == "they/them"
        assert env["CLAUDE_CONFIG_DIR"] == str(paths.agent_claude("alpha"))
        assert env["PWD"] == str(paths.agent_notes("alpha"))
        assert not any(k.startswith("HIVE_TRIO_") for k in env)
        # The transient showed for the spawn and cleared.
        assert isinstance(seen[0], TransientSetEvent) and seen[0].transient_kind is TransientKind.SPAWNING
        assert any(isinstance(e, TransientClearedEvent) for e in seen)
        assert coord.transients() == {}
        # Repos: a config repo with a starter commit, and an applied repo at the same commit.
        deployed = await rev_parse(paths.agent_applied("alpha"), "main")
        assert await rev_parse(paths.agent_config("alpha"), "main") == deployed
        assert record.deployed_sha == deployed
        assert (paths.agent_applied("alpha") / "agent.toml").exists()
        assert coord.is_registered("alpha") and coord.is_running("alpha")
        # The process is its own group leader, and its pid is recorded for a reconcile after SIGKILL.
        pid = pid_of(lifecycle, "alpha")
        assert os.getpgid(pid) == pid
        assert str(pid) in paths.pid_record("alpha").read_text()
        assert {"event": "spawned", "agent": "alpha"} in await helper_events(coord, "manager")
        assert any("spawned" in k for k in await kicks(coord, "alpha"))
        status = (await coord.agent_statuses(["alpha"]))[0]
        assert status.running and status.deployed_sha == deployed[:12]
    assert not pid_alive(pid), "shutdown stops the agent"
    assert not paths.pid_record("alpha").exists()


async def test_spawn_refuses_bad_and_duplicate_names(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        ops = hive.coordinator.ops
        for bad in ("../x", "Alpha", "manager", "", "a" * 40):
            with pytest.raises(InvalidRequest):
                await ops.spawn(bad)
        await ops.spawn("alpha")
        with pytest.raises(Conflict, match="already exists"):
            await ops.spawn("alpha")
        assert not (hive.coordinator.paths.state_dir / "x").exists()


async def test_a_killed_agent_is_restarted_and_its_unacked_messages_requeued(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        lifecycle = lifecycle_of(coord)
        await coord.ops.spawn("alpha")
        await coord.send("operator", "alpha", "work item")
        handed = [m for m in await coord.recv("alpha", limit=32) if m.body == "work item"]
        assert handed, "the message was handed out"
        old = pid_of(lifecycle, "alpha")
        os.kill(old, signal.SIGKILL)

        async def restarted() -> int | None:
            # The restart ends with its kick (the last step of a launch), which the hub announces.
            run = lifecycle.run_of("alpha")
            kicked = any("restarted after a crash" in k for k in await kicks(coord, "alpha"))
            return run.pid if run is not None and run.pid != old and kicked else None

        new = await eventually(restarted, coord=coord, what="a restarted process")
        assert pid_alive(new) and not pid_alive(old)
        crash = [e for e in await helper_events(coord, "manager") if e["event"] == "container_crash"]
        assert len(crash) == 1 and crash[0]["agent"] == "alpha"
        assert "was killed by SIGKILL" in crash[0]["note"] and "restart 1 of 3" in crash[0]["note"]
        assert any("restarted after a crash" in k for k in await kicks(coord, "alpha"))
        again = [m for m in await coord.recv("alpha", limit=32) if m.body == "work item"]
        assert again and again[0].redelivered
        record = await coord.require_agent("alpha")
        assert record.desired == "running" and not record.failed


async def test_past_the_restart_limit_the_agent_is_failed(short_tmp: Path) -> None:
    config = lifecycle_config(short_tmp, agent_command="echo boom; exit 3", restart_intensity=2)
    async with open_hive(config) as hive:
        coord = hive.coordinator
        with coord.subscribe(buffer=4096) as events:
            await coord.ops.spawn("crashy")
            with trio.fail_after(15):
                async for item in events:
                    if isinstance(item, ContainerStateChangedEvent) and item.row.failed:
                        row = item.row
                        break
        assert not row.running
        assert row.failed_reason is not None and "exited with status 3" in row.failed_reason
        assert "marked failed" in row.failed_reason
        crashes = [e for e in await helper_events(coord, "manager") if e["event"] == "container_crash"]
        assert len(crashes) == 3  # two restarts, then the one that gave up
        assert "marked failed" in crashes[-1]["note"]
        assert lifecycle_of(coord).run_of("crashy") is None
        assert "boom" in coord.paths.agent_log("crashy").read_text()
        # It waits for the operator: a start clears `failed` and gives it a fresh restart budget.
        await coord.ops.start("crashy")

        async def crashed_again() -> bool:
            crashes = [e for e in await helper_events(coord, "manager") if e["event"] == "container_crash"]
            return len(crashes) == 6 and (await coord.require_agent("crashy")).failed

        await eventually(crashed_again, coord=coord, what="a second round of restarts")


async def test_an_operator_stop_holds(short_tmp: Path) -> None:
    config = lifecycle_config(short_tmp)
    async with open_hive(config) as hive:
        coord = hive.coordinator
        lifecycle = lifecycle_of(coord)
        await coord.ops.spawn("alpha")
        pid = pid_of(lifecycle, "alpha")
        await coord.ops.stop("alpha")
        assert not pid_alive(pid)
        assert lifecycle.run_of("alpha") is None and not coord.is_running("alpha")
        record = await coord.require_agent("alpha")
        assert record.desired == "stopped"
        assert {"event": "killed", "agent": "alpha"} in await helper_events(coord, "manager")
        crashes = [e for e in await helper_events(coord, "manager") if e["event"] == "container_crash"]
        assert crashes == [], "an operator stop is not a crash"
    # A daemon restart keeps it stopped, and its socket is registered again.
    async with open_hive(config) as hive:
        coord = hive.coordinator
        assert coord.is_registered("alpha")
        assert lifecycle_of(coord).run_of("alpha") is None
        await coord.ops.start("alpha")
        assert lifecycle_of(coord).run_of("alpha") is not None
        assert (await coord.require_agent("alpha")).desired == "running"
        # Starting a running agent is a no-op, not an error.
        pid = pid_of(lifecycle_of(coord), "alpha")
        await coord.ops.start("alpha")
        assert pid_of(lifecycle_of(coord), "alpha") == pid


async def test_restart_replaces_the_process(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        lifecycle = lifecycle_of(coord)
        await coord.ops.spawn("alpha")
        old = pid_of(lifecycle, "alpha")
        await coord.ops.restart("alpha")
        new = pid_of(lifecycle, "alpha")
        assert new != old and not pid_alive(old) and pid_alive(new)
        assert any("restarted by the operator" in k for k in await kicks(coord, "alpha"))
        assert [e for e in await helper_events(coord, "manager") if e["event"] == "container_crash"] == []


@pytest.mark.timeout(30)
async def test_a_second_action_is_refused_and_a_cancelled_one_clears(short_tmp: Path) -> None:
    # The agent survives SIGTERM (noting it in got-term), so a graceful stop waits out its (long) grace period.
    survivor = "trap 'echo TERM >> got-term' TERM; : > trapped; while :; do sleep 3600 & wait $!; done"
    config = lifecycle_config(short_tmp, agent_command=survivor, stop_grace=30.0)
    async with open_hive(config) as hive:
        coord = hive.coordinator
        lifecycle = lifecycle_of(coord)
        await coord.ops.spawn("stubborn")
        pid = pid_of(lifecycle, "stubborn")
        # A TERM that lands before the shell has set its trap would simply kill it: wait for the trap.
        notes = coord.paths.agent_notes("stubborn")
        await eventually(lambda: (notes / "trapped").exists(), watch=[notes], what="the trap")
        outcome: list[BaseException] = []

        async def stop() -> None:
            try:
                await coord.ops.stop("stubborn")
            except LifecycleFailed as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop)
            notes = coord.paths.agent_notes("stubborn")
            # In its grace period: the spinner is up and the TERM has been delivered (so the stop is
            # waiting, not still on its way to the signal).
            await eventually(
                lambda: coord.transient_of("stubborn") is TransientKind.STOPPING and (notes / "got-term").exists(),
                coord=coord,
                watch=[notes],
                what="the spinner",
            )
            for second in (coord.ops.restart, coord.ops.start, coord.ops.rebuild, coord.ops.destroy):
                with pytest.raises(Busy, match="busy stopping"):
                    await second("stubborn")
            assert pid_alive(pid), "still in its grace period"
            assert coord.cancel_transient("stubborn")
        assert len(outcome) == 1 and isinstance(outcome[0], ActionCancelled)
        assert coord.transients() == {}
        # Cancelling the stop forced it: the process is gone, not left half-stopped.
        assert not pid_alive(pid)
        assert (await coord.require_agent("stubborn")).desired == "stopped"


@pytest.mark.timeout(30)
async def test_a_stop_cancelled_before_its_sigterm_still_stops_the_process(short_tmp: Path) -> None:
    # Cancelled as soon as the spinner is up, i.e. while the stop is still recording `stopped`, before the
    # SIGTERM: the process must go anyway (forced), since the roster says stopped. Before, it was left alive.
    survivor = "trap 'echo TERM >> got-term' TERM; : > trapped; while :; do sleep 3600 & wait $!; done"
    config = lifecycle_config(short_tmp, agent_command=survivor, stop_grace=30.0)
    async with open_hive(config) as hive:
        coord = hive.coordinator
        lifecycle = lifecycle_of(coord)
        await coord.ops.spawn("stubborn")
        pid = pid_of(lifecycle, "stubborn")
        # A TERM that lands before the shell has set its trap would simply kill it: wait for the trap.
        notes = coord.paths.agent_notes("stubborn")
        await eventually(lambda: (notes / "trapped").exists(), watch=[notes], what="the trap")
        with coord.subscribe() as events, trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(coord.ops.stop, "stubborn")
                # The spinner's event: the stop has begun and is now writing `stopped`, before any signal.
                async for item in events:
                    if isinstance(item, TransientSetEvent) and item.transient_kind is TransientKind.STOPPING:
                        break
                assert not (coord.paths.agent_notes("stubborn") / "got-term").exists()
                scope.cancel()
        assert not pid_alive(pid), "a cancelled stop leaves no process behind"
        assert (await coord.require_agent("stubborn")).desired == "stopped"
        assert lifecycle.run_of("stubborn") is None
        assert [s.running for s in await coord.agent_statuses(["stubborn"])] == [False]


async def test_the_transient_clears_after_a_failure(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("alpha")
        # Break the applied config behind the daemon's back; rebuild must fail and say why.
        applied = coord.paths.agent_applied("alpha")
        await commit_file(applied, "agent.toml", "[agent\n", "broken")
        with coord.subscribe() as events:
            with pytest.raises(LifecycleFailed, match="not valid TOML"):
                await coord.ops.rebuild("alpha")
            kinds = [type(item).__name__ for item in drain(events)]
        assert kinds[0] == "TransientSetEvent" and "TransientClearedEvent" in kinds
        assert coord.transients() == {}
        assert lifecycle_of(coord).run_of("alpha") is not None, "a failed rebuild leaves the agent running"


async def test_rebuild_restarts_onto_the_applied_config(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        lifecycle = lifecycle_of(coord)
        await coord.ops.spawn("alpha")
        old = pid_of(lifecycle, "alpha")
        applied = coord.paths.agent_applied("alpha")
        sha = await commit_file(applied, "agent.toml", '[env]\nGREETING = "hej"\n', "greet")
        env_file = coord.paths.agent_notes("alpha") / "env.txt"
        env_file.unlink()
        await coord.ops.rebuild("alpha")
        assert pid_of(lifecycle, "alpha") != old
        env = await eventually(lambda: read_env(env_file), watch=[env_file.parent], what="the new env dump")
        assert env["GREETING"] == "hej"
        assert (await coord.require_agent("alpha")).deployed_sha == sha
        rebuilt = [e for e in await helper_events(coord, "manager") if e["event"] == "rebuilt"]
        assert rebuilt == [{"event": "rebuilt", "agent": "alpha", "sha": sha, "tag": None}]
        assert rebuilt[0] in await helper_events(coord, "alpha"), "the agent hears of its own rebuild"


async def test_destroy_keeps_a_tombstone_and_purge_removes_it(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        lifecycle = lifecycle_of(coord)
        await coord.ops.spawn("alpha")
        pid = pid_of(lifecycle, "alpha")
        (coord.paths.agent_notes("alpha") / "notes.md").write_text("remember this")
        pending = await coord.ops.request_spawn("beta", "helper", requested_by="manager")
        apply = await coord.propose_approval("alpha", ApprovalKind.APPLY_COMMIT, commit_ref="abcdef1")
        with pytest.raises(Conflict, match="live agent"):
            await coord.ops.purge_tombstone("alpha")
        with coord.subscribe() as events:
            await coord.ops.destroy("alpha")
            removed = [e for e in drain(events) if isinstance(e, ContainerRemovedEvent) and e.name == "alpha"]
        assert removed
        assert not pid_alive(pid)
        assert await coord.find_agent("alpha") is None
        assert not coord.is_registered("alpha")
        assert await coord.tombstones() == ["alpha"]
        assert (coord.paths.agent_notes("alpha") / "notes.md").read_text() == "remember this"
        failed = await coord.get_approval(apply.id)
        assert failed.status is ApprovalStatus.FAILED and failed.note == "agent destroyed"
        assert (await coord.get_approval(pending.id)).status is ApprovalStatus.PENDING
        events_to_manager = await helper_events(coord, "manager")
        assert {"event": "destroyed", "agent": "alpha"} in events_to_manager
        assert any(e["event"] == "approval_resolved" and e["id"] == apply.id for e in events_to_manager)
        # Spawning the tombstone's name again keeps its notes and config history.
        config_head = await rev_parse(coord.paths.agent_config("alpha"), "main")
        await coord.ops.spawn("alpha")
        assert (coord.paths.agent_notes("alpha") / "notes.md").exists()
        assert await rev_parse(coord.paths.agent_config("alpha"), "main") == config_head
        await coord.ops.destroy("alpha", purge=True)
        assert not coord.paths.agent_state_root("alpha").exists()
        assert not coord.paths.agent_applied("alpha").exists()
        assert await coord.tombstones() == []
        with pytest.raises(NotFound):
            await coord.ops.purge_tombstone("alpha")


async def test_purge_tombstone(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("alpha")
        await coord.ops.destroy("alpha")
        assert await coord.tombstones() == ["alpha"]
        await coord.ops.purge_tombstone("alpha")
        assert await coord.tombstones() == []
        assert not coord.paths.agent_applied("alpha").exists()


async def test_reconcile_restarts_what_should_run(short_tmp: Path) -> None:
    config = lifecycle_config(short_tmp)
    async with open_hive(config) as hive:
        coord = hive.coordinator
        for name in ("alpha", "beta", "gamma"):
            await coord.ops.spawn(name)
        await coord.ops.stop("beta")
        await coord.mark_failed("gamma", "it broke")
        old = pid_of(lifecycle_of(coord), "alpha")
    assert not pid_alive(old)
    async with open_hive(config) as hive:
        coord = hive.coordinator
        lifecycle = lifecycle_of(coord)
        assert all(coord.is_registered(n) for n in ("alpha", "beta", "gamma"))
        assert lifecycle.run_of("alpha") is not None and pid_of(lifecycle, "alpha") != old
        assert lifecycle.run_of("beta") is None
        assert lifecycle.run_of("gamma") is None
        rows = {r.name: r for r in await coord.agent_statuses()}
        assert rows["alpha"].running and not rows["beta"].running
        assert rows["gamma"].failed and rows["gamma"].failed_reason == "it broke"
        assert any("daemon restarted" in k for k in await kicks(coord, "alpha"))


async def test_reconcile_marks_what_cannot_start(short_tmp: Path) -> None:
    config = lifecycle_config(short_tmp)
    async with open_hive(config) as hive:
        await hive.coordinator.ops.spawn("alpha")
        applied = hive.coordinator.paths.agent_applied("alpha")
    # The applied config went bad while the daemon was down.
    await commit_file(applied, "agent.toml", "[nonsense]\n", "bad")
    async with open_hive(config) as hive:
        coord = hive.coordinator
        row = (await coord.agent_statuses(["alpha"]))[0]
        assert row.failed and not row.running
        assert row.failed_reason is not None and "unknown table" in row.failed_reason
        assert coord.is_registered("alpha")


async def test_the_manager_runs_from_manager_command_and_is_restarted(short_tmp: Path) -> None:
    config = lifecycle_config(short_tmp, manager_command=ENV_AGENT)
    async with open_hive(config) as hive:
        coord = hive.coordinator
        lifecycle = lifecycle_of(coord)
        paths = coord.paths
        env = await eventually(
            lambda: read_env(paths.manager_notes / "env.txt"), watch=[paths.manager_notes], what="the manager's env"
        )
        assert env["HIVE_AGENT"] == "manager"
        assert env["HIVE_SOCKET"] == str(paths.manager_socket)
        assert env["HIVE_AGENTS_DIR"] == str(paths.agents_state_root)
        assert env["CLAUDE_CONFIG_DIR"] == str(paths.manager_claude)
        assert coord.is_registered("manager")
        old = pid_of(lifecycle, "manager")
        os.kill(old, signal.SIGKILL)
        await eventually(
            lambda: (run := lifecycle.run_of("manager")) is not None and run.pid != old,
            coord=coord,
            what="a new manager",
        )
        # The manager is not an agent: it has no roster row and no status card.
        assert await coord.find_agent("manager") is None
        assert [r.name for r in await coord.agent_statuses()] == []
    assert not pid_alive(old)


async def test_without_manager_command_no_manager_process_runs(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        assert lifecycle_of(hive.coordinator).run_of("manager") is None


# ------------------------------------------------------------------------------ issue 13


async def test_a_spawn_refused_for_a_too_long_socket_path_leaves_no_roster_entry(short_tmp: Path) -> None:
    runtime = short_tmp / ("r" * 50)
    async with open_hive(lifecycle_config(short_tmp, runtime_dir=runtime)) as hive:
        coord = hive.coordinator
        name = "a" * 31  # valid, but runtime/agents/<31>/mcp.sock is past 107 bytes here
        assert len(str(coord.paths.agent_socket(name))) > 107
        with pytest.raises(InvalidRequest, match=r"socket path .* over the 107 a unix socket allows"):
            await coord.ops.spawn(name)
        with pytest.raises(InvalidRequest, match="socket path"):
            await coord.ops.request_spawn(name, None, requested_by="operator")
        assert await coord.find_agent(name) is None
        assert [row.name for row in await coord.agent_statuses()] == []
        assert name not in coord.kept_state_names()


async def test_a_spawn_approval_cut_off_after_its_spawn_began_is_approved_at_start_and_cannot_be_denied(
    short_tmp: Path,
) -> None:
    """The probe: approve cut off by SIGKILL left the agent running and the approval pending; a later deny
    succeeded with the agent still running. Here the cut is staged: the roster row (the spawn's first
    durable step) exists, the resolution does not."""
    config = lifecycle_config(short_tmp)
    async with open_hive(config) as hive:
        approval = await hive.coordinator.ops.request_spawn("alpha", "a helper", requested_by="manager")
        await hive.coordinator.record_spawn("alpha")  # what a killed approve leaves behind
    async with open_hive(config) as hive:
        coord = hive.coordinator
        resolved = await coord.get_approval(approval.id)
        assert resolved.status is ApprovalStatus.APPROVED
        assert resolved.note is not None and "finished at its next start" in resolved.note
        with pytest.raises(Conflict, match="already approved"):
            await coord.ops.deny(approval.id, note="too late")
        await eventually(lambda: lifecycle_of(coord).run_of("alpha") is not None, coord=coord, what="alpha running")


async def pending_of(coord: Coordinator, name: str) -> int:
    rows = await coord.agent_statuses([name])
    return rows[0].pending_messages if rows else -1


async def test_a_tombstone_brought_back_keeps_its_mail_but_a_stranger_after_purge_gets_none(short_tmp: Path) -> None:
    """The probe: a respawned name received the old agent's whole inbox, even after destroy --purge."""
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("alpha")
        for i in range(5):
            await coord.send(OPERATOR, "alpha", f"for the first alpha {i}")
        await coord.ops.destroy("alpha")  # a tombstone: its mail waits for it
        await coord.ops.spawn("alpha")
        assert await pending_of(coord, "alpha") >= 5
        await coord.ops.destroy("alpha", purge=True)
        await coord.ops.spawn("alpha")  # a stranger with the same name
        bodies = [m.body for m in await coord.recv("alpha", limit=32)]
        assert not any(b.startswith("for the first alpha") for b in bodies), bodies


async def test_a_purge_cut_off_half_way_is_finished_at_the_next_start(short_tmp: Path) -> None:
    """A daemon killed mid-purge once left a half-deleted repo, and the next spawn of the name failed."""
    from hive_trio.lifecycle.actions import PURGE_MARKER, _trash

    config = lifecycle_config(short_tmp)
    async with open_hive(config) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("alpha")
        await coord.ops.destroy("alpha")
        paths = coord.paths
        # Where a kill can land: marker written, the applied repo renamed away, the rest still in place.
        (paths.agent_state_root("alpha") / PURGE_MARKER).touch()
        _trash(paths.agent_applied("alpha"))
    async with open_hive(config) as hive:
        coord = hive.coordinator
        assert await coord.tombstones() == []
        leftovers = [p for root in (paths.agents_state_root, paths.applied_root) for p in root.iterdir()]
        assert leftovers == [], leftovers
        await coord.ops.spawn("alpha")  # the name is free, and its repos are whole
        assert await rev_parse(paths.agent_applied("alpha"), "main")


async def test_a_clean_exit_is_a_stop_not_a_crash(short_tmp: Path) -> None:
    # `claude -p` as the agent command exits 0 after one answer: hive-c0re counted that as a crash and
    # restarted it until it was marked failed, with a container_crash for the manager each time.
    config = lifecycle_config(short_tmp, agent_command="echo done; exit 0", restart_intensity=2)
    async with open_hive(config) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("oneshot")

        async def stopped() -> bool:
            record = await coord.require_agent("oneshot")
            return record.desired == "stopped" and lifecycle_of(coord).run_of("oneshot") is None

        await eventually(stopped, coord=coord, what="the clean exit to be recorded as a stop")
        record = await coord.require_agent("oneshot")
        assert not record.failed
        assert not [e for e in await helper_events(coord, "manager") if e["event"] == "container_crash"]
        assert "done" in coord.paths.agent_log("oneshot").read_text()
