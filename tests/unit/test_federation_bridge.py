"""The trio -> asyncio bridge: results, errors, cancellation that really stops the asyncio task, clean shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from hive_trio.federation.bridge import LoopClosed, open_asyncio_loop


async def test_a_coroutine_runs_on_the_loop_thread_and_its_result_or_error_comes_back() -> None:
    async with open_asyncio_loop() as aio:

        async def where(x: int) -> tuple[int, str]:
            await asyncio.sleep(0)
            return x * 2, threading.current_thread().name

        value, thread = await aio.run(where, 21)
        assert value == 42 and thread != threading.current_thread().name

        async def boom() -> None:
            raise KeyError("nope")

        with pytest.raises(KeyError, match="nope"):
            await aio.run(boom)


async def test_cancelling_a_crossing_cancels_the_asyncio_task_before_returning() -> None:
    states: list[str] = []
    async with open_asyncio_loop() as aio:

        async def slow() -> None:
            states.append("started")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                await asyncio.sleep(0.01)  # unwinding takes a moment; the caller must wait for it
                states.append("cancelled")
                raise

        with trio.move_on_after(0.1) as scope:
            await aio.run(slow)
        assert scope.cancelled_caught
        # By the time trio sees the cancellation, nothing is left running on the asyncio side.
        assert states == ["started", "cancelled"]


async def test_shutdown_stops_leftover_tasks_and_joins_the_thread() -> None:
    before = threading.active_count()
    stopped = []
    async with open_asyncio_loop() as aio:

        async def forever() -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                stopped.append(True)

        async def spawn() -> None:
            asyncio.get_running_loop().create_task(forever())
            await asyncio.sleep(0)

        await aio.run(spawn)
        loop = aio.loop
    assert stopped == [True]
    assert loop.is_closed()
    assert threading.active_count() <= before + 1  # trio may keep its idle worker thread cached
    with pytest.raises(LoopClosed):
        await aio.run(spawn)
