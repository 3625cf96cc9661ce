"""A writer cancelled after its batch was taken but before the batch's thread started must not hang anyone."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from hive_trio.database import Database


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
