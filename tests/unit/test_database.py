from __future__ import annotations

from pathlib import Path

import apsw
import pytest
import trio
import trio.testing

from hive_trio.errors import StorageError
from hive_trio.store.database import SCHEMA_VERSION, Database, SchemaTooNew, connect, migrate


async def test_wal_full_and_schema_version(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db")
    try:
        mode = await db.read(lambda c: c.pragma("journal_mode"))
        sync = await db.read(lambda c: c.pragma("synchronous"))
        version = await db.read(lambda c: c.pragma("user_version"))
    finally:
        db.close()
    assert (mode, sync, version) == ("wal", 2, SCHEMA_VERSION)


async def test_synchronous_is_configurable(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db", synchronous="NORMAL")
    try:
        assert await db.read(lambda c: c.pragma("synchronous")) == 1
    finally:
        db.close()


def test_migrations_run_once_and_in_order(tmp_path: Path) -> None:
    conn = connect(tmp_path / "hive.db")
    assert migrate(conn) == 0
    assert migrate(conn) == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"agents", "messages", "approvals", "questions"} <= tables
    conn.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = apsw.Connection(str(tmp_path / "hive.db"))
    conn.pragma("user_version", SCHEMA_VERSION + 1)
    with pytest.raises(SchemaTooNew, match="upgrade"):
        migrate(conn)


async def test_concurrent_writes_are_group_committed(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db")
    try:

        async def insert(i: int) -> int:
            return await db.write(
                lambda c: c.execute(
                    "INSERT INTO agents (name, created_at) VALUES (?, 0) RETURNING rowid", (f"a{i}",)
                ).fetchone()[0]
            )

        async with trio.open_nursery() as nursery:
            for i in range(64):
                nursery.start_soon(insert, i)
        count = await db.read(lambda c: c.execute("SELECT count(*) FROM agents").fetchone()[0])
        assert count == 64
        assert db.writes == 64
        assert db.batches < 64  # some writes shared a commit
    finally:
        db.close()


async def test_one_failing_write_in_a_batch_does_not_spoil_the_others(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db")
    results: list[object] = []

    async def insert(name: str) -> None:
        try:
            await db.write(lambda c: c.execute("INSERT INTO agents (name, created_at) VALUES (?, 0)", (name,)))
            results.append("ok")
        except StorageError as exc:
            results.append(exc)

    try:
        async with trio.open_nursery() as nursery:
            for name in ["a", "b", "a", "c"]:  # the second "a" violates the primary key
                nursery.start_soon(insert, name)
        names = await db.read(lambda c: [r[0] for r in c.execute("SELECT name FROM agents ORDER BY name")])
        assert names == ["a", "b", "c"]
        assert results.count("ok") == 3
        assert len(results) == 4
    finally:
        db.close()


async def test_a_failed_write_leaves_nothing_half_applied(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db")

    def two_rows_then_fail(conn: apsw.Connection) -> None:
        conn.execute("INSERT INTO agents (name, created_at) VALUES ('x', 0)")
        conn.execute("INSERT INTO agents (name, created_at) VALUES ('y', 0)")
        raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError):
            await db.write(two_rows_then_fail)
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM agents").fetchone()[0]) == 0
    finally:
        db.close()


async def test_cancelled_before_pickup_never_runs(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db")
    ran: list[str] = []
    try:
        async with db._write_limiter:  # hold the writer so the next write must wait
            with trio.CancelScope() as scope:
                scope.cancel()
                await db.write(lambda c: ran.append("ran"))
        assert ran == []
        assert db._pending == []
    finally:
        db.close()


async def test_cancelled_mid_commit_is_committed_and_reports_cancellation(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db")
    entered = trio.Event()
    release = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def slow_insert(conn: apsw.Connection) -> str:
        conn.execute("INSERT INTO agents (name, created_at) VALUES ('slow', 0)")
        trio.from_thread.run_sync(entered.set, trio_token=token)
        trio.from_thread.run(release.wait, trio_token=token)
        return "done"

    outcome: list[str] = []
    scope = trio.CancelScope()

    async def writer() -> None:
        with scope:
            outcome.append(await db.write(slow_insert))
        if scope.cancelled_caught:
            outcome.append("cancelled")

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await entered.wait()
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        # The caller saw its cancellation, not a success; the change is committed, never half-applied.
        assert outcome == ["cancelled"]
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM agents").fetchone()[0]) == 1
    finally:
        db.close()


async def test_read_only_database_gives_a_clear_error_and_recovers(tmp_path: Path) -> None:
    # Root ignores file modes, so sqlite's own switch stands in for a read-only database.
    db = await Database.open(tmp_path / "hive.db")
    try:
        await db.read(lambda c: None)
        db._writer.execute("PRAGMA query_only = 1")
        with pytest.raises(StorageError, match="nothing was changed"):
            await db.write(lambda c: c.execute("INSERT INTO agents (name, created_at) VALUES ('ro', 0)"))
        db._writer.execute("PRAGMA query_only = 0")
        await db.write(lambda c: c.execute("INSERT INTO agents (name, created_at) VALUES ('ro', 0)"))
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM agents").fetchone()[0]) == 1
    finally:
        db.close()
