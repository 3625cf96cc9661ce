"""hive.db shared with other processes: a reader that opens and closes connections (the CLI's backup,
sqlite3, a test watching the demo) must never make the daemon's later commits invisible or unlinked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from hive_trio.store.database import Database

READ = (
    "import apsw, sys\n"
    "for _ in range(5):\n"
    "    c = apsw.Connection(sys.argv[1]); c.setbusytimeout(2000)\n"
    "    n = c.execute('select count(*) from t').fetchone()[0]; c.close()\n"
    "print(n)\n"
)


async def count_from_another_process(path: Path) -> int:
    done = await trio.run_process([sys.executable, "-c", READ, str(path)], capture_stdout=True)
    return int(done.stdout)


@pytest.mark.timeout(30)
async def test_another_process_closing_its_connections_still_sees_every_later_commit(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    db = await Database.open(path)
    try:
        await db.write(lambda c: c.execute("create table t(x)"))
        for expected in range(1, 4):
            await db.write(lambda c: c.execute("insert into t values (1)"))
            # Before: the second connection's set-up closed a descriptor of hive.db in this process, which
            # dropped SQLite's locks; the other process then deleted the WAL on its close and saw 1 forever.
            assert await count_from_another_process(path) == expected
        assert (tmp_path / "hive.db-wal").exists()
    finally:
        await db.aclose()
