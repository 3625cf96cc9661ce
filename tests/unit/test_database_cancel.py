"""A writer cancelled after its batch was taken but before the batch's thread started must not hang anyone."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from hive_trio.store.database import Database


async def test_cancel_at_the_thread_entry_checkpoint_neither_hangs_nor_loses_the_write(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db")
    threads = trio.to_thread.current_default_thread_limiter()
    saved = threads.total_tokens
    threads.total_tokens = 1
    try:
        # Hold the only worker-thread token, so the batch leader blocks inside to_thread.run_sync's
        # entry checkpoint with its batch already taken: exactly where a cancel used to strand it.
        await threads.acquire()
        scope = trio.CancelScope()
        outcome: list[str] = []

        async def leader() -> None:
            with scope:
                await db.write(lambda c: c.execute("INSERT INTO agents (name, created_at) VALUES ('a', 0)"))
                outcome.append("returned")
            outcome.append("cancelled" if scope.cancelled_caught else "done")

        async def follower() -> None:
            await db.write(lambda c: c.execute("INSERT INTO agents (name, created_at) VALUES ('b', 0)"))
            outcome.append("follower done")

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(leader)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(follower)
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
                threads.release()
        # The leader's write ran (it was already taken) and it then saw its cancellation.
        assert "cancelled" in outcome and "follower done" in outcome
        names = await db.read(lambda c: [r[0] for r in c.execute("SELECT name FROM agents ORDER BY name")])
        assert names == ["a", "b"]
    finally:
        threads.total_tokens = saved
        await db.aclose()


async def test_a_cancelled_successor_passes_the_lead_on(tmp_path: Path) -> None:
    """The caller chosen to lead the next round is cancelled before it runs: the next waiter leads instead."""
    db = await Database.open(tmp_path / "hive.db")
    threads = trio.to_thread.current_default_thread_limiter()
    saved = threads.total_tokens
    threads.total_tokens = 1
    try:
        await threads.acquire()  # the first batch waits at its thread's door until released
        done: list[str] = []
        scopes = {name: trio.CancelScope() for name in "abc"}

        async def writer(name: str) -> None:
            with scopes[name]:
                await db.write(lambda c: c.execute("INSERT INTO agents (name, created_at) VALUES (?, 0)", (name,)))
                done.append(name)

        real_hand_over = db._hand_over

        def hand_over_then_cancel() -> None:
            real_hand_over()
            if db._pending and db._pending[0].leads:  # 'b' was just handed the lead: cancel it there and then
                scopes["b"].cancel()

        db._hand_over = hand_over_then_cancel  # type: ignore[method-assign]
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for name in "abc":
                    nursery.start_soon(writer, name)
                    await trio.testing.wait_all_tasks_blocked()
                # 'a' leads a batch stuck at the thread; 'b' and 'c' wait, 'b' first in line.
                assert [r.leads for r in db._pending] == [False, False]
                threads.release()
        assert done == ["a", "c"]
        names = await db.read(lambda c: [r[0] for r in c.execute("SELECT name FROM agents ORDER BY name")])
        assert names == ["a", "c"]
    finally:
        threads.total_tokens = saved
        await db.aclose()
