"""hive.db's upkeep (issue 13): SQLite's recovery notices reach our log, the WAL stays small and is cut to
0 bytes when idle, a lost database is refused, and an online backup is one committed state."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import apsw
import pytest
import trio

from hive_trio.errors import StorageError
from hive_trio.store.database import (
    WAL_SIZE_LIMIT,
    Database,
    LostDatabase,
    backup_database,
    refuse_a_lost_database,
)


def insert_sql(conn: apsw.Connection, body: str) -> None:
    conn.execute("INSERT INTO messages (sender, recipient, body, sent_at) VALUES ('a', 'b', ?, 0)", (body,))


async def test_a_wal_recovered_at_open_is_logged_as_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A daemon killed with frames only in the WAL: the next open replays them, and now says so."""
    live = tmp_path / "live"
    live.mkdir()
    db = await Database.open(live / "hive.db")
    db._writer.pragma("wal_autocheckpoint", 0)  # keep the frames in the WAL, as a crash would
    for i in range(20):
        await db.write(lambda c, i=i: insert_sql(c, f"m{i}"))
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for name in ("hive.db", "hive.db-wal"):  # what a SIGKILL leaves: no checkpoint, no clean close
        shutil.copyfile(live / name, crashed / name)
    db.close()
    caplog.set_level(logging.DEBUG, logger="hive_trio.sqlite")
    reopened = await Database.open(crashed / "hive.db")
    try:
        assert await reopened.read(lambda c: c.execute("SELECT count(*) FROM messages").get) == 20
    finally:
        reopened.close()
    notices = [r for r in caplog.records if r.name == "hive_trio.sqlite" and "recovered" in r.getMessage()]
    assert notices and notices[0].levelno == logging.WARNING, [r.getMessage() for r in caplog.records]


async def test_the_wal_stays_bounded_under_sustained_writes(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db")
    try:
        largest = 0
        for i in range(400):  # 400 x 8 KB = 3.2 MB through the WAL
            await db.write(lambda c, i=i: insert_sql(c, f"{i}:" + "x" * 8000))
            largest = max(largest, db.wal_bytes())
    finally:
        db.close()
    # SQLite's default (1,000 pages) let it reach ~4 MB; now it is reset past 1 MiB and cut back.
    assert largest <= WAL_SIZE_LIMIT + 64 * 1024, largest


async def test_an_idle_writer_has_its_wal_truncated_to_zero(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    db = await Database.open(tmp_path / "hive.db")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(db.serve_checkpoints)
            for i in range(50):
                await db.write(lambda c, i=i: insert_sql(c, f"{i}:" + "x" * 4000))
            assert db.wal_bytes() > 0
            await trio.sleep(31)  # one interval with writes: a passive checkpoint, the WAL is kept
            await trio.sleep(31)  # one idle interval: TRUNCATE
            assert db.wal_bytes() == 0
            await db.write(lambda c: insert_sql(c, "after"))  # and writing goes on as before
            nursery.cancel_scope.cancel()
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM messages").get) == 51
    finally:
        db.close()


def test_a_lost_database_beside_kept_agents_is_refused_and_a_first_start_is_not(tmp_path: Path) -> None:
    db = tmp_path / "hive.db"
    refuse_a_lost_database(db, [], fresh=False)  # a first start: nothing kept
    with pytest.raises(LostDatabase, match=r"is missing, but the state dir still holds 2 agent\(s\) \(a, b\)"):
        refuse_a_lost_database(db, ["a", "b"], fresh=False)
    db.write_bytes(b"")
    with pytest.raises(LostDatabase, match=r"empty \(0 bytes\).*--fresh"):
        refuse_a_lost_database(db, ["a"], fresh=False)
    refuse_a_lost_database(db, ["a"], fresh=True)
    db.write_bytes(b"SQLite format 3\0")
    refuse_a_lost_database(db, ["a"], fresh=False)


async def test_a_backup_taken_while_writes_go_on_holds_every_commit_before_it(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "hive.db")
    committed_before: list[int] = []
    try:
        async with trio.open_nursery() as nursery:
            warmed_up = trio.Event()

            async def writer() -> None:
                i = 0
                while True:
                    await db.write(lambda c, i=i: insert_sql(c, f"{i}:" + "y" * 2000))
                    i += 1
                    if i == 100:
                        warmed_up.set()

            nursery.start_soon(writer)
            await warmed_up.wait()
            committed_before.append(await db.read(lambda c: c.execute("SELECT max(id) FROM messages").get))
            await trio.to_thread.run_sync(backup_database, tmp_path / "hive.db", tmp_path / "copy.db")
            nursery.cancel_scope.cancel()
    finally:
        db.close()
    assert sorted(os.listdir(tmp_path))[:2] == ["copy.db", "hive.db"]  # no partial left, no -wal for the copy
    copy = apsw.Connection(str(tmp_path / "copy.db"))
    assert copy.pragma("journal_mode") == "delete" and copy.pragma("integrity_check") == "ok"
    ids = [row[0] for row in copy.execute("SELECT id FROM messages ORDER BY id")]
    assert ids == list(range(1, len(ids) + 1)) and ids[-1] >= committed_before[0] > 0
    with pytest.raises(StorageError, match="refusing to overwrite"):
        backup_database(tmp_path / "hive.db", tmp_path / "copy.db")
