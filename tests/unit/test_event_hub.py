from __future__ import annotations

import trio
import trio.testing

from hive_trio.core.event_hub import EventHub, Resync
from hive_trio.core.inbox_bells import InboxBells
from hive_trio.records import DashboardEvent, SentEvent, TransientClearedEvent


def sent(body: str) -> SentEvent:
    return SentEvent(sender="a", recipient="b", body=body, at=1.0)


def test_seq_is_strictly_increasing_and_current_seq_tracks_it() -> None:
    hub = EventHub()
    assert hub.current_seq() == 0
    seqs = [hub.emit(sent(str(i))).seq for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert hub.current_seq() == 5


async def test_a_slow_subscriber_never_delays_a_fast_one() -> None:
    hub = EventHub(buffer=4)
    fast_got: list[DashboardEvent | Resync] = []
    with hub.subscribe() as slow, hub.subscribe() as fast:
        async with trio.open_nursery() as nursery:

            async def read_fast() -> None:
                async for item in fast:
                    fast_got.append(item)

            nursery.start_soon(read_fast)
            for i in range(20):
                hub.emit(sent(str(i)))  # synchronous: emit can never block
                await trio.testing.wait_all_tasks_blocked()
            assert [e.seq for e in fast_got if not isinstance(e, Resync)] == list(range(1, 21))
            # The slow one, which never read, was cut loose with a resync marker after its buffer filled.
            slow_items = [item async for item in slow]
            assert [type(x).__name__ for x in slow_items] == ["SentEvent"] * 4 + ["Resync"]
            assert slow.lagged
            assert hub.subscriber_count == 1
            nursery.cancel_scope.cancel()


def test_replay_since_uses_the_ring_or_says_resnapshot() -> None:
    hub = EventHub(ring=5)
    for i in range(8):
        hub.emit(sent(str(i)))
    assert [e.seq for e in hub.replay_since(5) or []] == [6, 7, 8]
    assert hub.replay_since(8) == []
    assert [e.seq for e in hub.replay_since(3) or []] == [4, 5, 6, 7, 8]
    assert hub.replay_since(2) is None  # 3 fell out of the ring
    assert hub.replay_since(9) is None  # a seq from the future: another daemon run
    assert hub.replay_since(-1) is None


async def test_a_closed_subscriber_is_forgotten() -> None:
    hub = EventHub()
    with hub.subscribe():
        assert hub.subscriber_count == 1
    hub.emit(TransientClearedEvent(name="a"))
    assert hub.subscriber_count == 0


async def test_inbox_bell_rung_before_the_wait_still_wakes_it() -> None:
    bells = InboxBells()
    bell = bells.bell("b")
    bells.ring("b")  # the coordinator rings it after a commit between "look at inbox" and "wait"
    with trio.fail_after(1):
        await bell.wait()
    assert not bells.bell("b").is_set()  # a fresh bell for the next wait


async def test_the_hub_is_pure_fan_out_and_rings_no_bell() -> None:
    hub, bells = EventHub(), InboxBells()
    bell = bells.bell("b")
    hub.emit(sent("x"))  # an observability event is not a wake-up
    assert not bell.is_set()
