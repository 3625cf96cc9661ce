from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing

from hive_trio.core.coordinator import Coordinator, open_coordinator
from hive_trio.errors import Busy, Conflict, InvalidRequest, TooLarge, UnknownAgent
from hive_trio.lifecycle.bare import BareLifecycle
from hive_trio.records import (
    BROADCAST,
    DashboardEvent,
    DeliveredEvent,
    QuestionAddedEvent,
    QuestionResolvedEvent,
    SentEvent,
    TransientClearedEvent,
    TransientKind,
    TransientSetEvent,
)
from hive_trio.rules.config import Config
from hive_trio.rules.names import InvalidName
from hive_trio.store.state_lock import AlreadyRunning


def tree(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*"))


def kinds(events: list[DashboardEvent]) -> list[str]:
    return [type(e).tag_value for e in events]


def transient_events(coord: Coordinator) -> list[DashboardEvent]:
    ring = coord.replay_since(0) or []
    return [e for e in ring if isinstance(e, TransientSetEvent | TransientClearedEvent)]


async def test_second_open_of_the_same_state_dir_fails(config: Config) -> None:
    async with open_coordinator(config, lifecycle=BareLifecycle):
        with pytest.raises(AlreadyRunning, match="already using"):
            async with open_coordinator(config, lifecycle=BareLifecycle):
                pass  # pragma: no cover
    async with open_coordinator(config, lifecycle=BareLifecycle):  # released on exit
        pass


async def test_transient_clears_on_success_and_error(coordinator: Coordinator) -> None:
    with coordinator.transient("alpha", TransientKind.STARTING):
        assert coordinator.transient_of("alpha") is TransientKind.STARTING
    assert coordinator.transient_of("alpha") is None
    with pytest.raises(RuntimeError), coordinator.transient("alpha", TransientKind.REBUILDING):
        raise RuntimeError("build failed")
    assert coordinator.transient_of("alpha") is None
    assert kinds(transient_events(coordinator)) == ["transient_set", "transient_cleared"] * 2


async def test_transient_clears_when_its_nursery_is_cancelled(coordinator: Coordinator) -> None:
    entered = trio.Event()

    async def long_action() -> None:
        with coordinator.transient("alpha", TransientKind.SPAWNING):
            entered.set()
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_action)
        await entered.wait()
        assert coordinator.transient_of("alpha") is TransientKind.SPAWNING
        nursery.cancel_scope.cancel()
    assert coordinator.transient_of("alpha") is None
    assert kinds(transient_events(coordinator))[-1] == "transient_cleared"


async def test_transient_clears_on_move_on_after(coordinator: Coordinator, autojump_clock: trio.abc.Clock) -> None:
    with trio.move_on_after(5) as scope, coordinator.transient("alpha", TransientKind.STOPPING):
        await trio.sleep(60)
    assert scope.cancelled_caught
    assert coordinator.transient_of("alpha") is None


async def test_operator_cancel_ends_the_action_and_clears(coordinator: Coordinator) -> None:
    async with trio.open_nursery() as nursery:

        async def action() -> None:
            with coordinator.transient("alpha", TransientKind.RESTARTING):
                await trio.sleep_forever()

        nursery.start_soon(action)
        await trio.testing.wait_all_tasks_blocked()
        assert coordinator.cancel_transient("alpha")
    assert coordinator.transient_of("alpha") is None
    assert not coordinator.cancel_transient("alpha")


async def test_second_action_while_one_is_in_flight_is_refused(coordinator: Coordinator) -> None:
    with coordinator.transient("alpha", TransientKind.REBUILDING):
        with pytest.raises(Busy, match="busy rebuilding"), coordinator.transient("alpha", TransientKind.STOPPING):
            pass  # pragma: no cover
        assert coordinator.transient_of("alpha") is TransientKind.REBUILDING
        with coordinator.transient("beta", TransientKind.STARTING):  # other agents are independent
            pass
    assert coordinator.transient_of("alpha") is None


@pytest.mark.parametrize("name", ["../x", "A", "", "a" * 200, "a/b", "manager", "system", "operator", "a\x00"])
async def test_hostile_names_never_reach_the_filesystem(coordinator: Coordinator, name: str, short_tmp: Path) -> None:
    before = tree(short_tmp)
    with pytest.raises(InvalidName):
        await coordinator.register_agent(name)
    with pytest.raises(InvalidName):
        coordinator.paths.agent_state_root(name)
    if name not in ("manager", "operator"):  # those two are inboxes, never agents
        with pytest.raises(InvalidRequest):
            await coordinator.send("operator", name, "hi")
    assert tree(short_tmp) == before


async def test_register_and_unregister_manage_a_child_scope(coordinator: Coordinator) -> None:
    served: list[str] = []

    async def fake_socket(coord: Coordinator, name: str, path: Path, *, task_status: trio.TaskStatus[None]) -> None:
        await trio.Path(path).write_text("socket")
        served.append(name)
        task_status.started()
        await trio.sleep_forever()

    coordinator._serve_socket = fake_socket
    path = await coordinator.register_agent("alpha")
    assert await trio.Path(path).exists() and coordinator.is_registered("alpha")
    slot = coordinator._slots["alpha"]
    await coordinator.register_agent("alpha")  # idempotent: the old scope is gone, a fresh one stands
    assert slot.scope.cancel_called and coordinator._slots["alpha"] is not slot
    assert served == ["alpha", "alpha"] and await trio.Path(path).exists()
    assert coordinator.unregister_agent("alpha")
    assert not await trio.Path(path).exists() and not coordinator.is_registered("alpha")


async def test_a_crashing_socket_is_contained(coordinator: Coordinator) -> None:
    async def crashing(coord: Coordinator, name: str, path: Path, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.lowlevel.checkpoint()
        raise RuntimeError("handler bug")

    coordinator._serve_socket = crashing
    await coordinator.register_agent("alpha")
    await trio.testing.wait_all_tasks_blocked()
    assert not coordinator.is_registered("alpha")
    await coordinator.record_spawn("beta")
    await coordinator.send("operator", "beta", "the daemon is still fine")


async def test_recv_wakes_on_a_new_message(coordinator: Coordinator, autojump_clock: trio.abc.Clock) -> None:
    await coordinator.record_spawn("alpha")
    got: list[str] = []

    async def receiver() -> None:
        got.extend(m.body for m in await coordinator.recv("alpha", wait_seconds=120))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.sleep(30)
        assert got == []
        start = trio.current_time()
        await coordinator.send("operator", "alpha", "wake up")
    assert got == ["wake up"]
    assert trio.current_time() == start  # woken by the send, not by the timeout


async def test_recv_times_out_empty(coordinator: Coordinator, autojump_clock: trio.abc.Clock) -> None:
    await coordinator.record_spawn("alpha")
    start = trio.current_time()
    assert await coordinator.recv("alpha", wait_seconds=10) == []
    assert trio.current_time() - start == pytest.approx(10)
    # Parking is capped (SPEC: up to 180 s).
    start = trio.current_time()
    assert await coordinator.recv("alpha", wait_seconds=10_000) == []
    assert trio.current_time() - start == pytest.approx(coordinator.config.max_recv_wait)


async def test_send_and_recv_are_mirrored_to_the_dashboard(coordinator: Coordinator) -> None:
    await coordinator.record_spawn("alpha")
    with coordinator.subscribe() as sub:
        await coordinator.send("operator", "alpha", "hello")
        await coordinator.recv("alpha")
        first = await sub.receive.receive()
        second = await sub.receive.receive()
    assert kinds([first, second]) == ["sent", "delivered"]  # type: ignore[list-item]
    assert isinstance(first, SentEvent) and (first.sender, first.recipient, first.body) == (
        "operator",
        "alpha",
        "hello",
    )


async def test_unknown_recipient_is_refused(coordinator: Coordinator) -> None:
    with pytest.raises(UnknownAgent):
        await coordinator.send("operator", "ghost", "x")
    with pytest.raises(InvalidRequest, match="system"):
        await coordinator.send("operator", "system", "x")


async def test_broadcast_send_appends_the_hint(coordinator: Coordinator) -> None:
    for name in ("alpha", "beta", "gamma"):
        await coordinator.record_spawn(name)
    assert [m.recipient for m in await coordinator.send("alpha", BROADCAST, "standup")] == ["beta", "gamma"]
    for name in ("beta", "gamma"):
        [m] = await coordinator.recv(name)
        assert m.body.startswith("standup") and "broadcast" in m.body and m.sender == "alpha"
    assert await coordinator.inbox_depth("alpha") == 0
    with pytest.raises(TooLarge):  # refused for every recipient at once: nothing lands
        await coordinator.send("alpha", BROADCAST, "x" * (coordinator.config.max_body_bytes + 1))
    assert [await coordinator.inbox_depth(n) for n in ("beta", "gamma")] == [0, 0]


async def test_kick_and_notify_come_from_system(coordinator: Coordinator) -> None:
    await coordinator.record_spawn("alpha")
    await coordinator.kick_agent("alpha", "restarted by the operator")
    [kick] = await coordinator.recv("alpha")
    assert kick.sender == "system" and "restarted by the operator" in kick.body
    assert str(coordinator.paths.agent_notes("alpha")) in kick.body
    from hive_trio.records import HelperSpawned

    await coordinator.notify_manager(HelperSpawned(agent="alpha"))
    [note] = await coordinator.recv("manager")
    assert note.sender == "system" and json.loads(note.body) == {"event": "spawned", "agent": "alpha"}
    await coordinator.notify_agent("ghost", HelperSpawned(agent="ghost"))  # best-effort: logged, not raised


async def test_kept_state_names_and_tombstones(coordinator: Coordinator) -> None:
    await coordinator.record_spawn("alpha")
    coordinator.paths.ensure_agent_dirs("alpha")
    coordinator.paths.ensure_agent_dirs("ghost")
    assert coordinator.kept_state_names() == ["alpha", "ghost"]
    assert await coordinator.tombstones() == ["ghost"]


async def test_question_deadline_gives_the_default_to_the_asker(
    coordinator: Coordinator, autojump_clock: trio.abc.Clock
) -> None:
    await coordinator.record_spawn("alpha")
    await coordinator.root_nursery.start(coordinator.serve_question_watchdog)
    q = await coordinator.ask("alpha", "deploy friday?", options=["yes", "no"], default_answer="no", ttl_seconds=300)
    await coordinator.ask("alpha", "no deadline")
    await trio.sleep(299)
    assert (await coordinator.get_question(q.id)).answer is None
    await trio.sleep(2)
    resolved = await coordinator.get_question(q.id)
    assert (resolved.answer, resolved.answerer) == ("no", "ttl")
    [note] = await coordinator.recv("alpha")
    assert json.loads(note.body) == {
        "event": "question_answered",
        "id": q.id,
        "question": "deploy friday?",
        "answer": "no",
        "answerer": "ttl",
    }
    ring = coordinator.replay_since(0) or []
    assert [type(e) for e in ring if isinstance(e, QuestionAddedEvent | QuestionResolvedEvent)] == [
        QuestionAddedEvent,
        QuestionAddedEvent,
        QuestionResolvedEvent,
    ]


async def test_peer_questions_go_to_the_target_and_only_it_may_answer(coordinator: Coordinator) -> None:
    for name in ("alpha", "beta", "gamma"):
        await coordinator.record_spawn(name)
    q = await coordinator.ask("alpha", "which branch?", target="beta", options=["main", "dev"], multi=True)
    [asked] = await coordinator.recv("beta")
    assert json.loads(asked.body)["event"] == "question_asked"
    with pytest.raises(Conflict, match="asked of 'beta'"):
        await coordinator.answer_question(q.id, "main", answerer="gamma")
    done = await coordinator.answer_question(q.id, ["main", "dev"], answerer="beta")
    assert done.answer == "main, dev"
    [answered] = await coordinator.recv("alpha")
    assert json.loads(answered.body)["answer"] == "main, dev"
    # Peer questions never reach the dashboard.
    ring = coordinator.replay_since(0) or []
    assert not [e for e in ring if isinstance(e, QuestionAddedEvent | QuestionResolvedEvent)]


async def test_operator_may_override_a_peer_question(coordinator: Coordinator) -> None:
    for name in ("alpha", "beta"):
        await coordinator.record_spawn(name)
    q = await coordinator.ask("alpha", "?", target="beta")
    done = await coordinator.answer_question(q.id, "operator says no", answerer="operator")
    assert done.answerer == "operator"


async def test_snapshot_reads_seq_before_gathering(coordinator: Coordinator) -> None:
    await coordinator.record_spawn("alpha")
    await coordinator.send("operator", "alpha", "one")
    snap = await coordinator.snapshot()
    assert snap.seq == coordinator.current_seq() == 1
    assert [a.name for a in snap.agents] == ["alpha"] and snap.agents[0].pending_messages == 1
    assert [m.body for m in snap.messages] == ["one"]


async def test_a_paused_agent_is_handed_nothing_until_unpaused(
    coordinator: Coordinator, autojump_clock: trio.testing.MockClock
) -> None:
    # The unpause commits through sqlite's thread; a loaded CI machine once took longer than the 50 ms
    # threshold, and the clock leapt to the parked recv's deadline before the unpause landed.
    autojump_clock.autojump_threshold = 1.0
    await coordinator.record_spawn("alpha")
    await coordinator.set_paused("alpha", True)
    await coordinator.send("operator", "alpha", "waits for you")
    assert await coordinator.recv("alpha", wait_seconds=30) == []
    assert await coordinator.inbox_depth("alpha") == 1  # kept, not lost
    got: list[str] = []

    async def parked() -> None:
        got.extend(m.body for m in await coordinator.recv("alpha", wait_seconds=120))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(parked)
        await trio.sleep(10)
        assert got == []
        await coordinator.set_paused("alpha", False)
    assert got == ["waits for you"]


async def test_paused_survives_a_daemon_restart(config: Config) -> None:
    async with open_coordinator(config, lifecycle=BareLifecycle) as coord:
        await coord.record_spawn("alpha")
        await coord.set_paused("alpha", True)
        await coord.send("operator", "alpha", "x")
    async with open_coordinator(config, lifecycle=BareLifecycle) as coord:
        assert await coord.recv("alpha") == []
        await coord.set_paused("alpha", False)
        assert [m.body for m in await coord.recv("alpha")] == ["x"]


async def test_sent_and_delivered_carry_the_message_id_and_the_rows_times(coordinator: Coordinator) -> None:
    await coordinator.record_spawn("alpha")
    with coordinator.subscribe() as sub:
        [message] = await coordinator.send("operator", "alpha", "same words")
        [delivered] = await coordinator.recv("alpha")
        sent_event = await sub.receive.receive()
        delivered_event = await sub.receive.receive()
    assert isinstance(sent_event, SentEvent) and isinstance(delivered_event, DeliveredEvent)
    assert sent_event.id == delivered_event.id == message.id
    assert sent_event.at == message.sent_at
    assert delivered.delivered_at is not None and delivered_event.at == delivered.delivered_at  # the row's stamp


async def test_a_resolution_notice_wakes_a_parked_recv(
    coordinator: Coordinator, autojump_clock: trio.abc.Clock
) -> None:
    # The bell is rung by the coordinator after the commit, not by the hub seeing the `sent` event.
    await coordinator.record_spawn("alpha")
    q = await coordinator.ask("alpha", "ship it?")
    got: list[str] = []

    async def receiver() -> None:
        got.extend(m.body for m in await coordinator.recv("alpha", wait_seconds=120))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.sleep(30)
        assert got == []
        start = trio.current_time()
        await coordinator.answer_question(q.id, "yes", answerer="operator")
    assert len(got) == 1 and json.loads(got[0])["event"] == "question_answered"
    assert trio.current_time() == start
