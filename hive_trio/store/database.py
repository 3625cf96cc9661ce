"""The one `hive.db`: APSW connections, schema migrations, and the group-committing writer.

Every write is a function of a connection, run in a worker thread inside one transaction. Writes that
arrive while another is committing are batched into the next transaction (group commit), each inside
its own savepoint, and every caller is answered only after the COMMIT that holds its change.

A solitary write (one caller, nothing else for the event loop to do) may be committed on the event
loop's own thread instead (`InlineCommitPolicy`): that saves the two thread wake-ups that dominate a
lone caller's latency. It is allowed only after a streak of solitary batches, never with other tasks
runnable, and never while recent batches have been slow, so a slow fsync stalls the loop at most once
before writes go back to the worker thread.

Cancellation: a write that has not been picked up yet is withdrawn and never runs. Once a batch holding
it is running, the caller waits (shielded) for that batch's outcome and then sees its cancellation; the
change is either committed or rolled back, never half-applied, and a rollback is never reported as
success. This module knows nothing of sockets, agents or events.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Generic, NoReturn, TypeVar

import apsw
import attrs
import outcome
import trio

from hive_trio.errors import StorageError
from hive_trio.rules.strict_dirs import open_regular

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
    # 3: federation (store/outbox.py). Remote sends wait in `outbox` until the destination's JetStream
    # acknowledged them; `federation_received` makes the (origin hive, origin id) of every message taken
    # from another hive unique, so a redelivery is absorbed.
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id INTEGER,
        kind TEXT NOT NULL CHECK (kind IN ('message', 'bounce')),
        hive TEXT NOT NULL,
        sender TEXT NOT NULL,
        address TEXT NOT NULL,
        subject TEXT NOT NULL,
        nats_msg_id TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        queued_at REAL NOT NULL,
        forwarded_at REAL,
        failed_at REAL,
        note TEXT
    );
    CREATE INDEX outbox_pending ON outbox (id) WHERE forwarded_at IS NULL AND failed_at IS NULL;
    CREATE INDEX outbox_message ON outbox (hive, message_id);
    CREATE TABLE federation_received (
        origin_hive TEXT NOT NULL,
        origin_id INTEGER NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (origin_hive, origin_id)
    ) WITHOUT ROWID;
    """,
    # 4: what harnesses report (issue 10): transcripts, permission requests and always-allow rules,
    # reminders, usage per agent per UTC day, and daily budgets.
    """
    CREATE TABLE transcript (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL,
        turn_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        at REAL NOT NULL,
        text TEXT,
        tool TEXT,
        input_json TEXT,
        is_error INTEGER NOT NULL DEFAULT 0,
        outcome TEXT,
        message_ids TEXT NOT NULL DEFAULT '[]',
        model TEXT,
        tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL
    );
    CREATE INDEX transcript_agent ON transcript (agent, id);
    CREATE INDEX transcript_at ON transcript (at);
    CREATE TABLE permissions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL,
        tool TEXT NOT NULL,
        input_json TEXT NOT NULL,
        requested_at REAL NOT NULL,
        deadline_at REAL NOT NULL,
        decision TEXT CHECK (decision IN ('allow', 'deny')),
        decided_by TEXT,
        always INTEGER NOT NULL DEFAULT 0,
        decided_at REAL,
        reason TEXT
    );
    CREATE INDEX permissions_open ON permissions (deadline_at) WHERE decision IS NULL;
    CREATE TABLE permission_rules (
        agent TEXT NOT NULL,
        tool TEXT NOT NULL,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        PRIMARY KEY (agent, tool)
    );
    CREATE TABLE reminders (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL,
        body TEXT NOT NULL,
        due_at REAL NOT NULL,
        created_at REAL NOT NULL,
        delivered_at REAL,
        message_id INTEGER
    );
    CREATE INDEX reminders_pending ON reminders (due_at) WHERE delivered_at IS NULL;
    CREATE TABLE usage_daily (
        agent TEXT NOT NULL,
        day TEXT NOT NULL,
        tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        turns INTEGER NOT NULL DEFAULT 0,
        budget_notified INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (agent, day)
    );
    CREATE TABLE budgets (
        agent TEXT PRIMARY KEY,
        daily_tokens INTEGER,
        daily_usd REAL
    );
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


class LostDatabase(StorageError):
    """`hive.db` is missing or empty while the state dir still holds agents: refuse to start over it."""


def refuse_a_lost_database(path: Path, kept: Sequence[str], *, fresh: bool) -> None:
    """Refuse to start on a missing or zero-length `hive.db` beside agents' kept state, unless `fresh`.

    hive-c0re (and hive_trio before issue 13) would create an empty database and turn every agent into
    a tombstone, silently: a truncated file looks exactly like a first start. Here a first start is one
    with nothing in `agents/` or `applied/`; anything else needs a backup restored or an explicit
    `--fresh` (config `fresh = true`).
    """
    if fresh or not kept:
        return
    try:
        size: int | None = os.lstat(path).st_size
    except FileNotFoundError:
        size = None
    if size:
        return
    found = "missing" if size is None else "empty (0 bytes)"
    names = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
    raise LostDatabase(
        f"{path} is {found}, but the state dir still holds {len(kept)} agent(s) ({names}): the database was "
        f"lost or cut short. Restore it from a backup (stop the daemon, copy the file made by `hive-trio backup` "
        f"to {path}, remove any {path.name}-wal/-shm beside it, start again), or start an empty hive over the "
        "kept state with --fresh"
    )


def secure_files(path: Path) -> None:
    """`hive.db` and its `-wal`/`-shm` are 0600 plain files of ours, never reached through a link.

    SQLite gives a new `-wal`/`-shm` the database file's own mode, so making `hive.db` 0600 before SQLite
    sees it is enough for new files; existing ones are checked (and tightened) the same way.
    """
    os.close(open_regular(path, os.O_RDWR | os.O_CREAT, 0o600))
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.close(open_regular(path.with_name(path.name + suffix), os.O_RDWR, 0o600))


# SQLite's own error log (sqlite3_log) goes to this logger. Its notices are how a WAL recovered at open
# ("recovered N frames from WAL file") or a journal rolled back shows itself; without the hook they vanish.
sqlite_log = logging.getLogger("hive_trio.sqlite")
_SQLITE_LOG_LEVELS: Final = {
    apsw.SQLITE_NOTICE: logging.WARNING,
    apsw.SQLITE_WARNING: logging.WARNING,
    apsw.SQLITE_CORRUPT: logging.ERROR,
    apsw.SQLITE_IOERR: logging.ERROR,
    apsw.SQLITE_FULL: logging.ERROR,
    apsw.SQLITE_NOTADB: logging.ERROR,
    apsw.SQLITE_CANTOPEN: logging.ERROR,
}
_sqlite_log_installed = False


def _sqlite_logged(code: int, message: str) -> None:
    # Called by SQLite from whichever thread hit it; it must never raise. Everyday refusals (a constraint,
    # a busy retry) stay at debug: every failed compare-and-set would otherwise be a log line.
    try:
        sqlite_log.log(_SQLITE_LOG_LEVELS.get(code & 0xFF, logging.DEBUG), "sqlite (code %d): %s", code, message)
    except Exception:  # pragma: no cover - logging itself failed
        pass


def route_sqlite_log() -> None:
    """Send SQLite's log (apsw's SQLITE_CONFIG_LOG hook) to `hive_trio.sqlite`; once per process."""
    global _sqlite_log_installed
    if not _sqlite_log_installed:
        apsw.config(apsw.SQLITE_CONFIG_LOG, _sqlite_logged)
        _sqlite_log_installed = True


# The WAL is checkpointed into hive.db by SQLite after every 256 pages (1 MiB at 4 KiB pages), not its
# default 1,000, and cut back to `WAL_SIZE_LIMIT` whenever it is reset, so on a small disk the WAL never
# takes the room the data needs (the probe saw a 3.7 MB WAL fill a 4 MiB disk). `serve_checkpoints`
# adds the time side: a checkpoint every interval with writes, and TRUNCATE (the WAL back to 0 bytes)
# once the writer has been idle for a whole interval.
WAL_AUTOCHECKPOINT_PAGES: Final = 256
WAL_SIZE_LIMIT: Final = 1024 * 1024
CHECKPOINT_INTERVAL: Final = 30.0


BUSY_TIMEOUT_MS: Final = 5000
BACKUP_STEP_PAGES: Final = 256


def backup_database(source: Path, target: Path) -> int:
    """Copy `source` (live, in WAL mode) to `target` with the online backup API; returns the page count.

    A plain `cp` of a running hive.db can miss what is still only in the WAL, or tear a page mid-write;
    the backup API copies one committed state. `target` must not exist (a backup never overwrites).
    """
    target = Path(os.path.abspath(target))
    if os.path.lexists(target):
        raise StorageError(f"refusing to overwrite {target}: pick a new file for the backup")
    partial = target.with_name(f".{target.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)
    os.close(open_regular(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        src = apsw.Connection(str(source), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_NOFOLLOW)
        try:
            src.setbusytimeout(BUSY_TIMEOUT_MS)
            dst = apsw.Connection(str(partial))
            try:
                with dst.backup("main", src, "main") as job:
                    while not job.done:
                        job.step(BACKUP_STEP_PAGES)
                    pages = job.page_count
                # The copy is a plain rollback-journal file: one file, nothing beside it to forget.
                dst.pragma("journal_mode", "delete")
                check = dst.pragma("quick_check")
                if check != "ok":
                    raise StorageError(f"the backup at {target} failed its check: {check}")
            finally:
                dst.close()
        finally:
            src.close()
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        os.rename(partial, target)
    except apsw.Error as exc:
        raise StorageError(f"could not back up {source}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return pages


def connect(path: Path, *, synchronous: str = "FULL") -> apsw.Connection:
    route_sqlite_log()
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_NOFOLLOW
    conn = apsw.Connection(str(path), flags=flags)
    conn.setbusytimeout(BUSY_TIMEOUT_MS)
    # A row-returning pragma inside a multi-statement execute silently stops the rest, so one each.
    conn.pragma("journal_mode", "wal")
    conn.pragma("synchronous", synchronous)
    conn.pragma("foreign_keys", True)
    conn.pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
    conn.pragma("journal_size_limit", WAL_SIZE_LIMIT)
    return conn


def _runnable() -> int:
    # Not free: `current_statistics()` also counts the waiters on every file descriptor trio watches, so
    # it costs ~4 µs with a handful of agents and ~50 µs with a thousand sockets listening. Ask only when
    # the answer decides something (a solitary batch that may run inline).
    return trio.lowlevel.current_statistics().tasks_runnable


@attrs.define
class InlineCommitPolicy:
    """Whether the next write batch is committed on the event loop's thread (sans-IO; the clock is the caller's).

    Inline only when all hold: the batch is one write; the `streak` batches before it were all solitary (a
    single caller, not a burst that is about to group); no other task is runnable (nobody waits on the
    loop right now); and batches have been fast lately (`fast_seconds`, an average that decays by
    `decay` per batch, measured on both paths, and the last batch too). A slow batch, inline or not,
    lifts the average at once, so with a slow disk writes stay in the worker thread and the loop keeps
    serving other connections; once commits are fast again, inline resumes.
    """

    streak: int = 8
    fast_seconds: float = 0.001
    decay: float = 0.2
    solitary: int = 0
    average: float = 0.0
    last: float = 0.0

    def choose(self, batch_size: int, runnable: int | Callable[[], int]) -> bool:
        """`runnable`: how many other tasks are runnable, or a function that counts them, asked last and
        only if every other condition holds (trio's count walks every file descriptor it watches)."""
        if batch_size != 1:
            self.solitary = 0
            return False
        self.solitary += 1
        if not (self.solitary > self.streak and self.average <= self.fast_seconds and self.last <= self.fast_seconds):
            return False
        return (runnable() if callable(runnable) else runnable) == 0

    def record(self, seconds: float) -> None:
        self.last = seconds
        self.average += (seconds - self.average) * self.decay
        if seconds > self.fast_seconds:
            self.solitary = 0


@attrs.define(eq=False)
class _WriteRequest(Generic[T]):
    work: Work[T]
    bulk: bool = False  # may take long: never run on the event loop's thread
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
        # Once, before SQLite opens anything: closing any descriptor of hive.db or its -shm in this process
        # drops every POSIX lock SQLite holds on it, and then another process's connection believes it is
        # the last one, checkpoints and deletes the WAL this daemon is still writing to.
        secure_files(path)
        self._writer = connect(path, synchronous=synchronous)
        migrate(self._writer)
        self._reader = connect(path, synchronous=synchronous)
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(1)
        self._pending: list[_WriteRequest[Any]] = []
        self._leading = False  # a round is running, or the caller who runs the next one has been chosen
        self.inline_policy = InlineCommitPolicy()
        self.batches = 0
        self.writes = 0
        self.inline_batches = 0

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
    async def write(self, work: Work[T], *, bulk: bool = False) -> T:
        """Run `work(conn)` in a transaction; return its result once committed, or raise its error.

        `bulk`: the work may take long (a sweep over many rows), so it is never run on the event loop's
        thread, whatever `InlineCommitPolicy` says; only small writes should leave it False.

        Whoever finds the writer idle leads: it takes every pending request into one batch and runs it.
        When the batch is done, its callers are woken and leadership passes to the oldest request that
        arrived meanwhile, whose caller takes everything pending into the next batch. Every caller is
        woken once, for its result or to lead: never a hand-off chain, never a second wake-up.
        """
        request: _WriteRequest[T] = _WriteRequest(work, bulk=bulk)
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
        # `CapacityLimiter.acquire` without its closing scheduler pass: the writer is uncontended except
        # during `aclose`.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._write_limiter.acquire_nowait()
        except trio.WouldBlock:
            await self._write_limiter.acquire()
        try:
            # A bulk write counts as a group: it never runs inline and it restarts the streak.
            size = len(self._pending) + sum(item.bulk for item in self._pending)
            inline = self.inline_policy.choose(size, _runnable)
            if inline:
                # Let the tasks already woken in this pass of the scheduler reach `write` first: requests
                # that arrived together must group-commit, never queue behind one another's fsync.
                await trio.lowlevel.cancel_shielded_checkpoint()
                if len(self._pending) != 1 or self._pending[0].bulk or _runnable():
                    inline = False
                    if len(self._pending) != 1 or self._pending[0].bulk:
                        self.inline_policy.solitary = 0  # it is a group after all
            batch, self._pending = self._pending, []
            for item in batch:
                item.taken = True
            try:
                if inline:
                    # On the loop's thread: no await between taking the batch and its outcome.
                    self.inline_batches += 1
                    self._run_batch(batch)
                else:
                    # Shielded and not abandonable: once items are taken, the batch always runs to its
                    # end, so every waiter gets an outcome.
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(self._run_batch, batch)
            finally:
                for item in batch:
                    if item.result is None:
                        item.result = outcome.Error(StorageError("the write batch did not run"))
                    item.wake.set()
                self._hand_over()
        finally:
            self._write_limiter.release()

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
        started = time.perf_counter()
        try:
            self._run_transaction(batch)
        finally:
            self.inline_policy.record(time.perf_counter() - started)

    def _run_transaction(self, batch: list[_WriteRequest[Any]]) -> None:
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

    # ------------------------------------------------------------------ checkpoints and backups
    def wal_bytes(self) -> int:
        try:
            return os.stat(self.path.with_name(self.path.name + "-wal")).st_size
        except FileNotFoundError:
            return 0

    async def checkpoint(self, *, truncate: bool) -> tuple[int, int]:
        """Checkpoint the WAL into hive.db, between write batches; returns (frames in WAL, checkpointed).

        `truncate` also cuts the WAL file to 0 bytes (SQLITE_CHECKPOINT_TRUNCATE); it gives up at once
        rather than wait for a reader, and the next interval tries again.
        """
        mode = apsw.SQLITE_CHECKPOINT_TRUNCATE if truncate else apsw.SQLITE_CHECKPOINT_PASSIVE

        def run() -> tuple[int, int]:
            self._writer.setbusytimeout(0)
            try:
                return self._writer.wal_checkpoint(mode=mode)
            except apsw.BusyError:
                return (-1, -1)
            except apsw.Error as exc:
                raise _storage_error(exc) from exc
            finally:
                self._writer.setbusytimeout(BUSY_TIMEOUT_MS)

        async with self._write_limiter:
            with trio.CancelScope(shield=True):
                result = await trio.to_thread.run_sync(run)
        return result

    async def serve_checkpoints(
        self, *, interval: float = CHECKPOINT_INTERVAL, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Checkpoint on time as well as size: PASSIVE after an interval with writes, TRUNCATE once idle."""
        task_status.started()
        seen = self.writes
        while True:
            await trio.sleep(interval)
            idle = self.writes == seen
            seen = self.writes
            if idle and self.wal_bytes() == 0:
                continue
            try:
                await self.checkpoint(truncate=idle)
            except StorageError as exc:
                # A full disk: the next interval tries again; the checkpoint is what frees the room.
                log.warning("WAL checkpoint failed: %s", exc)

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
