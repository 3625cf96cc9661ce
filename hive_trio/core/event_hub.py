"""The event hub: stamps `seq`, keeps a ring of recent events, and fans out to subscribers.

hive-c0re uses one tokio `broadcast` channel, where a lagging receiver silently loses frames. Here each
subscriber has its own bounded trio memory channel; one that fills up is sent a `Resync` marker (one
slot is kept free for it) and dropped, so `emit` never blocks and a slow subscriber never delays the
others. It is pure fan-out: waking a parked `recv` is the coordinator's job (`core.inbox_bells`), rung
after each commit, never a side effect of an event. Everything here is synchronous and in memory; it
never touches the database or a socket.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import attrs
import trio

from hive_trio.records import DashboardEvent


@attrs.frozen
class Resync:
    """Sent to a subscriber in place of the events it could not keep up with."""

    reason: str = "subscriber fell behind"


RESYNC: Final = Resync()
HubItem = DashboardEvent | Resync


@attrs.define(eq=False)
class Subscription:
    """One subscriber's view: iterate it for events; a `Resync` item is always the last one."""

    receive: trio.MemoryReceiveChannel[HubItem]
    _send: trio.MemorySendChannel[HubItem]
    capacity: int
    lagged: bool = False
    delivered: int = 0

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> HubItem:
        try:
            return await self.receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None


@attrs.define(eq=False)
class Bell:
    """Rung after every `emit` (once per burst, however many events): a wake-up that carries nothing.

    For a reader that pulls events from subscriptions it already holds (the dashboard's fan-out
    writer), so one task wakes per burst instead of one per subscriber.
    """

    _rung: trio.Event = attrs.field(factory=trio.Event)

    def ring(self) -> None:
        self._rung.set()

    async def wait(self) -> None:
        await self._rung.wait()
        self._rung = trio.Event()


class EventHub:
    def __init__(self, *, buffer: int = 256, ring: int = 4096) -> None:
        self._seq = 0
        self._buffer = buffer
        self._ring: deque[DashboardEvent] = deque(maxlen=ring)
        self._subscribers: set[Subscription] = set()
        self._bells: set[Bell] = set()
        self.dropped_subscribers = 0

    # ------------------------------------------------------------------ seq and fan-out
    def current_seq(self) -> int:
        """The high-water seq. Read it *before* gathering a snapshot; later events have a larger seq."""
        return self._seq

    def emit(self, event: DashboardEvent) -> DashboardEvent:
        self._seq += 1
        stamped = attrs.evolve(event, seq=self._seq)
        self._ring.append(stamped)
        for sub in list(self._subscribers):
            self._offer(sub, stamped)
        for bell in self._bells:
            bell.ring()
        return stamped

    def _offer(self, sub: Subscription, event: DashboardEvent) -> None:
        if sub.receive.statistics().current_buffer_used >= sub.capacity:
            self._drop(sub)
            return
        try:
            sub._send.send_nowait(event)
            sub.delivered += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._subscribers.discard(sub)

    def _drop(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        sub.lagged = True
        self.dropped_subscribers += 1
        try:
            sub._send.send_nowait(RESYNC)  # the slot held back for exactly this
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        sub._send.close()

    @contextmanager
    def subscribe(self, *, buffer: int | None = None) -> Iterator[Subscription]:
        capacity = self._buffer if buffer is None else buffer
        send, receive = trio.open_memory_channel[HubItem](capacity + 1)
        sub = Subscription(receive=receive, send=send, capacity=capacity)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            send.close()
            receive.close()

    @contextmanager
    def bell(self) -> Iterator[Bell]:
        """A `Bell` rung after each emit, for as long as the block lasts."""
        bell = Bell()
        self._bells.add(bell)
        try:
            yield bell
        finally:
            self._bells.discard(bell)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def replay_since(self, seq: int) -> list[DashboardEvent] | None:
        """Events after `seq` if the ring still holds all of them, else None (the caller resnapshots)."""
        if seq > self._seq or seq < 0:
            return None
        if seq == self._seq:
            return []
        if not self._ring or self._ring[0].seq > seq + 1:
            return None
        return [e for e in self._ring if e.seq > seq]
