"""The one `hive.db`: APSW connections, schema migrations, and the group-committing writer.

Every write is a function of a connection, run in a worker thread inside one transaction. Writes that
arrive while another is committing are batched into the next transaction (group commit), each inside
its own savepoint, and every caller is answered only after the COMMIT that holds its change.

Cancellation: a write that has not been picked up yet is withdrawn and never runs. Once a batch holding
it is running, the caller waits (shielded) for that batch's outcome and then sees its cancellation; the
change is either committed or rolled back, never half-applied, and a rollback is never reported as
success. This module knows nothing of sockets, agents or events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import apsw
import attrs
import outcome
import trio

from hive_trio.errors import StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[apsw.Connection], T]

# Forward-only migrations; entry i brings the schema to version i + 1.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE agents (
        name TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        parent TEXT,
        desired TEXT NOT NULL DEFAULT 'running' CHECK (desired IN ('running', 'stopped')),
        failed INTEGER NOT NULL DEFAULT 0,
        paused INTEGER NOT NULL DEFAULT 0,
        needs_update INTEGER NOT NULL DEFAULT 0,
        needs_login INTEGER NOT NULL DEFAULT 0,
        deployed_sha TEXT,
        active_model TEXT,
        status_text TEXT,
        status_set_at REAL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        body TEXT NOT NULL,
        sent_at REAL NOT NULL,
        delivered_at REAL,
        acked_at REAL,
        requeued INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX messages_inbox ON messages (recipient, id) WHERE delivered_at IS NULL;
    CREATE INDEX messages_inflight ON messages (recipient, id)
        WHERE delivered_at IS NOT NULL AND acked_at IS NULL;
    CREATE INDEX messages_acked ON messages (acked_at) WHERE acked_at IS NOT NULL;
    CREATE TABLE approvals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('spawn', 'apply_commit')),
        commit_ref TEXT,
        fetched_sha TEXT,
        description TEXT,
        diff TEXT,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'approved', 'denied', 'failed', 'cancelled')),
        note TEXT,
        requested_at REAL NOT NULL,
        resolved_at REAL,
        requested_by TEXT
    );
    CREATE INDEX approvals_pending ON approvals (id) WHERE status = 'pending';
    CREATE TABLE questions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        asker TEXT NOT NULL,
        target TEXT,
        question TEXT NOT NULL,
        options TEXT NOT NULL DEFAULT '[]',
        multi INTEGER NOT NULL DEFAULT 0,
        default_answer TEXT,
        deadline_at REAL,
        answer TEXT,
        answerer TEXT,
        cancelled INTEGER NOT NULL DEFAULT 0,
        asked_at REAL NOT NULL,
        answered_at REAL
    );
    CREATE INDEX questions_open ON questions (deadline_at) WHERE answer IS NULL;
    """,
    # 2: why an agent is `failed` (restart limit, a start that could not happen), for the operator.
    """
    ALTER TABLE agents ADD COLUMN failed_reason TEXT;
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


class SchemaTooNew(StorageError):
    pass


def _storage_error(exc: BaseException) -> StorageError:
    if isinstance(exc, apsw.FullError):
        reason = "the disk is full"
    elif isinstance(exc, apsw.ReadOnlyError):
        reason = "the database is read-only"
    elif isinstance(exc, apsw.BusyError):
        reason = "the database is locked by another process"
    else:
        reason = str(exc) or type(exc).__name__
    return StorageError(f"could not commit to hive.db: {reason}; nothing was changed")


def _explain_storage_errors(batch: list[_WriteRequest[Any]]) -> None:
    """A write that failed inside sqlite (disk full mid-statement...) is told why, in words."""
    for item in batch:
        if isinstance(item.result, outcome.Error) and isinstance(item.result.error, apsw.Error):
            item.result = outcome.Error(_storage_error(item.result.error))


def migrate(conn: apsw.Connection) -> int:
    """Bring `conn`'s schema to `SCHEMA_VERSION`, one transaction per step. Returns the old version."""
    current = int(conn.pragma("user_version"))
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"hive.db has schema version {current}, newer than this hive-trio understands "
            f"({SCHEMA_VERSION}); upgrade hive-trio"
        )
    for version in range(current, SCHEMA_VERSION):
        with conn:
            conn.execute(MIGRATIONS[version])
            conn.pragma("user_version", version + 1)
    return current


def connect(path: Path, *, synchronous: str = "FULL") -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.setbusytimeout(5000)
    # A row-returning pragma inside a multi-statement execute silently stops the rest, so one each.
    conn.pragma("journal_mode", "wal")
    conn.pragma("synchronous", synchronous)
    conn.pragma("foreign_keys", True)
    return conn


@attrs.define(eq=False)
class _WriteRequest(Generic[T]):
    work: Work[T]
    taken: bool = False  # in a batch: it will run, whatever happens to its caller
    leads: bool = False  # its caller runs the next round
    result: outcome.Outcome[T] | None = None
    # Set once: when its batch has finished, or when its caller is made the next round's leader.
    wake: trio.Event = attrs.field(factory=trio.Event)


class Database:
    """One writer connection behind a `CapacityLimiter(1)`, one reader connection behind another.

    APSW refuses concurrent use of a connection from two threads (`ThreadingViolationError`) and does
    not queue, so each connection has exactly one limiter token.
    """

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._writer = connect(path, synchronous=synchronous)
        migrate(self._writer)
        self._reader = connect(path, synchronous=synchronous)
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(1)
        self._pending: list[_WriteRequest[Any]] = []
        self._leading = False  # a round is running, or the caller who runs the next one has been chosen
        self.batches = 0
        self.writes = 0

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "FULL") -> Database:
        return await trio.to_thread.run_sync(lambda: cls(path, synchronous=synchronous))

    def close(self) -> None:
        self._reader.close()
        self._writer.close()

    async def aclose(self) -> None:
        # Waits out any batch still in its thread, so the connection is never closed under it.
        with trio.CancelScope(shield=True):
            async with self._write_limiter, self._read_limiter:
                self.close()

    # ------------------------------------------------------------------ writes
    async def write(self, work: Work[T]) -> T:
        """Run `work(conn)` in a transaction; return its result once committed, or raise its error.

        Whoever finds the writer idle leads: it takes every pending request into one batch and runs it.
        When the batch is done, its callers are woken and leadership passes to the oldest request that
        arrived meanwhile, whose caller takes everything pending into the next batch. Every caller is
        woken once, for its result or to lead: never a hand-off chain, never a second wake-up.
        """
        request: _WriteRequest[T] = _WriteRequest(work)
        self._pending.append(request)
        try:
            if self._leading:
                await request.wake.wait()
            else:
                self._leading = request.leads = True
            if request.result is None:
                await self._lead()
                # A leader cancelled while its (shielded) batch ran sees the cancellation now, as others do.
                await trio.lowlevel.checkpoint_if_cancelled()
        except trio.Cancelled:
            await self._withdraw(request)
            raise
        assert request.result is not None
        return request.result.unwrap()

    async def _lead(self) -> None:
        async with self._write_limiter:
            batch, self._pending = self._pending, []
            for item in batch:
                item.taken = True
            try:
                # Shielded and not abandonable: once items are taken, the batch always runs to its end,
                # so every waiter gets an outcome.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._run_batch, batch)
            finally:
                for item in batch:
                    if item.result is None:
                        item.result = outcome.Error(StorageError("the write batch did not run"))
                    item.wake.set()
                self._hand_over()

    def _hand_over(self) -> None:
        """The next round is led by the oldest waiting caller; with none, the writer goes idle."""
        if self._pending:
            successor = self._pending[0]
            successor.leads = True
            successor.wake.set()
        else:
            self._leading = False

    async def _withdraw(self, request: _WriteRequest[Any]) -> None:
        """Its caller was cancelled. Not yet in a batch: it never runs (and a leader passes the lead on).
        In a batch: wait, shielded, for that batch's outcome; the caller then sees its cancellation."""
        if request.taken:
            with trio.CancelScope(shield=True):
                await request.wake.wait()
            return
        self._pending.remove(request)
        if request.leads:
            self._hand_over()

    def _run_batch(self, batch: list[_WriteRequest[Any]]) -> None:
        conn = self._writer
        self.batches += 1
        self.writes += len(batch)
        single = len(batch) == 1
        try:
            conn.execute("BEGIN IMMEDIATE")
        except apsw.Error as exc:
            err = _storage_error(exc)
            for item in batch:
                item.result = outcome.Error(err)
            return
        try:
            for item in batch:
                if single:
                    item.result = outcome.capture(item.work, conn)
                    continue
                conn.execute("SAVEPOINT batch_item")
                item.result = outcome.capture(item.work, conn)
                if isinstance(item.result, outcome.Error):
                    if conn.getautocommit():
                        # sqlite rolled the whole transaction back (disk full, I/O error): the batch
                        # is lost, and its reason is this item's error, not the missing savepoint.
                        raise item.result.error
                    conn.execute("ROLLBACK TO batch_item")
                conn.execute("RELEASE batch_item")
            if single and isinstance(batch[0].result, outcome.Error):
                # sqlite may already have rolled the whole transaction back (SQLITE_FULL, an I/O error).
                if not conn.getautocommit():
                    conn.execute("ROLLBACK")
                _explain_storage_errors(batch)
                return
            conn.execute("COMMIT")
        except BaseException as exc:
            # COMMIT (or a savepoint) failed: nothing in this batch happened.
            log.warning("write batch of %d rolled back: %s", len(batch), exc)
            try:
                if not conn.getautocommit():
                    conn.execute("ROLLBACK")
            except apsw.Error:
                log.exception("rollback after failed commit also failed")
            err = _storage_error(exc)
            for item in batch:
                if item.result is None or isinstance(item.result, outcome.Value):
                    item.result = outcome.Error(err)
            _explain_storage_errors(batch)
            return
        _explain_storage_errors(batch)

    # ------------------------------------------------------------------ reads
    async def read(self, work: Work[T]) -> T:
        """Run `work(conn)` against a consistent snapshot on the reader connection."""
        async with self._read_limiter:
            return await trio.to_thread.run_sync(self._run_read, work)

    def _run_read(self, work: Work[T]) -> T:
        conn = self._reader
        try:
            conn.execute("BEGIN")
            try:
                return work(conn)
            finally:
                conn.execute("COMMIT")
        except apsw.Error as exc:
            raise _storage_error(exc) from exc


class StoreFace:
    """The async face of one store's `*_tx` functions: each method reads the clock and makes one `Database` call."""

    def __init__(self, db: Database, *, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock
