"""The inline-commit policy (sans-IO) and its effect in `Database`: which batches may run on the loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import apsw
import trio

from hive_trio.store.database import Database, InlineCommitPolicy


def test_inline_only_after_a_streak_of_solitary_fast_batches_with_nothing_runnable() -> None:
    policy = InlineCommitPolicy(streak=3, fast_seconds=0.001)
    assert [policy.choose(1, 0) for _ in range(3)] == [False, False, False]
    assert policy.choose(1, 0)
    assert not policy.choose(1, 1)  # another task is runnable: it must not wait behind an fsync
    assert not policy.choose(2, 0)  # a group: the streak starts over
    assert [policy.choose(1, 0) for _ in range(4)] == [False, False, False, True]


def test_a_slow_batch_sends_writes_back_to_the_thread_until_commits_are_fast_again() -> None:
    policy = InlineCommitPolicy(streak=0, fast_seconds=0.001, decay=0.5)
    assert policy.choose(1, 0)
    policy.record(0.050)  # one slow fsync
    inline = []
    for _ in range(10):
        inline.append(policy.choose(1, 0))
        policy.record(0.030)  # the disk stays slow: every batch still measured, in the thread
    assert not any(inline)
    recovered = []
    for _ in range(20):
        recovered.append(policy.choose(1, 0))
        policy.record(0.0002)
    assert not recovered[0] and recovered[-1]  # inline resumes only once the average has decayed


def _insert(conn: apsw.Connection) -> int:
    conn.execute("INSERT INTO agents (name, created_at) VALUES (?, 0)", (f"a{time.perf_counter_ns()}",))
    return threading.get_ident()


async def test_a_lone_caller_commits_on_the_loop_and_each_write_is_still_committed(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db", synchronous="OFF")
    db.inline_policy = InlineCommitPolicy(streak=2, fast_seconds=10.0)
    try:
        threads = [await db.write(_insert) for _ in range(6)]
        assert threads[:2].count(threading.get_ident()) == 0  # the streak is built in the worker
        assert threads[2:] == [threading.get_ident()] * 4 and db.inline_batches == 4
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM agents").fetchall()[0][0]) == 6
    finally:
        db.close()


async def test_concurrent_callers_group_commit_in_the_thread(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db", synchronous="OFF")
    db.inline_policy = InlineCommitPolicy(streak=0, fast_seconds=10.0)
    idents: list[int] = []
    try:
        await db.write(_insert)  # inline: nothing else runs
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(lambda: _record(db, idents))
        assert threading.get_ident() not in idents[1:]  # the later batches had company: thread
        assert db.batches < 9
    finally:
        db.close()


async def _record(db: Database, idents: list[int]) -> None:
    idents.append(await db.write(_insert))


async def test_a_slow_commit_is_run_on_the_loop_at_most_once(tmp_path: Path) -> None:
    """A disk that turns slow stalls the event loop for one batch at most, then writes leave the loop."""
    db = await Database.open(tmp_path / "hive.db", synchronous="OFF")
    db.inline_policy = InlineCommitPolicy(streak=2, fast_seconds=0.005)
    loop = threading.get_ident()

    def slow(conn: apsw.Connection) -> int:
        time.sleep(0.02)  # stands in for an fsync that takes 20 ms
        return _insert(conn)

    try:
        for _ in range(4):
            await db.write(_insert)
        threads = [await db.write(slow) for _ in range(5)]
        assert threads.count(loop) <= 1
        assert threads[1:].count(loop) == 0
    finally:
        db.close()


async def test_a_bulk_write_never_runs_on_the_loop(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db", synchronous="OFF")
    db.inline_policy = InlineCommitPolicy(streak=1, fast_seconds=10.0)
    loop = threading.get_ident()
    try:
        assert [await db.write(_insert) == loop for _ in range(2)] == [False, True]  # small: inline after one
        assert await db.write(_insert, bulk=True) != loop
        assert [await db.write(_insert) == loop for _ in range(2)] == [False, True]  # the streak restarted
    finally:
        db.close()


def test_the_runnable_count_is_asked_only_when_it_decides() -> None:
    """trio's count walks every watched file descriptor: a group, a short streak or a slow disk never asks."""
    asked: list[int] = []

    def runnable() -> int:
        asked.append(1)
        return 0

    policy = InlineCommitPolicy(streak=2, fast_seconds=0.001)
    assert not policy.choose(5, runnable)  # a group
    assert not policy.choose(1, runnable) and not policy.choose(1, runnable)  # the streak is being built
    assert asked == []
    assert policy.choose(1, runnable) and asked == [1]
    policy.record(0.05)  # slow: inline is off until the average decays, and nobody is asked meanwhile
    assert not any(policy.choose(1, runnable) for _ in range(3)) and asked == [1]
    assert not InlineCommitPolicy(streak=0).choose(1, lambda: 3)
