"""The one crossing from trio into asyncio: an asyncio event loop in its own thread, for nats-py.

nats-py is asyncio-only and there is no trio NATS client. Rather than run trio-asyncio (which swaps the
asyncio loop policy process-wide and costs 0.1-0.3 ms per crossing, federation-study.md §2), the
daemon runs one private asyncio loop in a worker thread that `open_asyncio_loop` owns, and awaits
coroutines on it with `AsyncioLoop.run`. No trio thread is held while a coroutine runs: the asyncio
task's done-callback wakes the trio task through its `TrioToken`.

Cancellation: a cancelled `run` cancels the asyncio task, waits (shielded, bounded) until it has
really stopped, then lets trio's `Cancelled` through, so nothing runs on after its caller has gone.
Shutdown: every task still on the loop is cancelled and awaited, then the loop stops and closes, and
the thread ends before `open_asyncio_loop` returns. This module must never import nats or know hives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a cancelled crossing waits for its asyncio task to finish unwinding.
CANCEL_GRACE = 2.0
SHUTDOWN_GRACE = 5.0


class LoopClosed(RuntimeError):
    """The asyncio loop has stopped; nothing more can run on it."""


class AsyncioLoop:
    """Handle on the loop thread. `run(fn, *args)` awaits `fn(*args)` (a coroutine function) on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closing = False
        self.crossings = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    async def run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        if self._closing:
            raise LoopClosed("the asyncio loop is shutting down")
        return await self._cross(fn, *args)

    async def _cross(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        self.crossings += 1
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        tasks: list[asyncio.Task[T]] = []

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        def start() -> None:
            # On the loop thread. The task's own done-callback wakes trio: unlike the future of
            # `run_coroutine_threadsafe`, which reports "cancelled" at once, it fires only once the
            # coroutine has really finished unwinding.
            task = self._loop.create_task(fn(*args))
            tasks.append(task)
            task.add_done_callback(wake)

        def cancel() -> None:
            for task in tasks:
                task.cancel()

        self._loop.call_soon_threadsafe(start)
        try:
            await done.wait()
        except trio.Cancelled:
            # FIFO on the loop: `start` has run before `cancel` does, so the task exists to be cancelled.
            self._loop.call_soon_threadsafe(cancel)
            with trio.CancelScope(shield=True), trio.move_on_after(CANCEL_GRACE):
                await done.wait()
            raise
        (task,) = tasks
        if task.cancelled():
            raise LoopClosed("the asyncio loop was shut down while this ran")
        return task.result()

    async def _shutdown(self) -> None:
        self._closing = True

        async def cancel_all() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_GRACE):
            await self._cross(cancel_all)
        self._loop.call_soon_threadsafe(self._loop.stop)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


@asynccontextmanager
async def open_asyncio_loop() -> AsyncIterator[AsyncioLoop]:
    """Run a private asyncio loop in a worker thread for as long as the block lives."""
    loop = asyncio.new_event_loop()
    handle = AsyncioLoop(loop)
    # One token of its own: the loop holds its thread for the hive's lifetime, never one of the shared ones.
    limiter = trio.CapacityLimiter(1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve_thread, loop, limiter)
        try:
            yield handle
        finally:
            await handle._shutdown()


async def _serve_thread(loop: asyncio.AbstractEventLoop, limiter: trio.CapacityLimiter) -> None:
    # Not abandonable: the thread always ends (the loop is stopped in `_shutdown`) before the nursery exits.
    await trio.to_thread.run_sync(_run_loop, loop, limiter=limiter)


__all__ = ["AsyncioLoop", "LoopClosed", "open_asyncio_loop"]
