"""A dashboard client on trio-websocket: snapshot, live events in seq order, actions, resume on reconnect.

`open_dashboard_client(url)` yields once the first snapshot is in. A background task owns the socket:
it routes `result` frames to the `action()` calls waiting for them, drops events at or below the
snapshot's seq (SPEC §4), keeps a `LiveState`, and on a dropped connection reconnects with `?since=`
so the server replays what was missed (or sends a fresh snapshot when it cannot). It is what `watch`,
the tests and the benchmark use; it never touches the hive except through the websocket.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from hive_trio.clients.live_state import LiveState
from hive_trio.dashboard.protocol import SeqFilter, encode_action, parse_frame, stream_url
from hive_trio.errors import HiveError, sole_error
from hive_trio.records import DashboardEvent, EventFrame, RecordError, ResultFrame, ResumedFrame, Snapshot

log = logging.getLogger(__name__)

Update = Snapshot | ResumedFrame | DashboardEvent
MAX_MESSAGE: Final = 64 * 1024 * 1024
_CONNECT_ERRORS: Final = (OSError, HandshakeError, ConnectionClosed, trio.BrokenResourceError, trio.TooSlowError)


class DashboardError(HiveError):
    """Something about the dashboard connection, said for a person."""


class DashboardRefused(DashboardError):
    """The server refused the websocket (wrong token, foreign origin): retrying will not help."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"the dashboard refused the connection ({status}): {reason}")
        self.status = status


class DashboardUnavailable(DashboardError):
    """No dashboard answered at that URL."""


class ActionFailed(DashboardError):
    """The hive refused or failed an action; the message is the hive's reason."""


class ConnectionLost(DashboardError):
    """The connection dropped before an action's result came back: it may or may not have happened."""


@attrs.define(eq=False)
class _Pending:
    done: trio.Event = attrs.field(factory=trio.Event)
    frame: ResultFrame | None = None


class DashboardClient:
    """A live view of one hive's dashboard. Iterate it for updates; call `action()` to act."""

    def __init__(
        self,
        url: str,
        *,
        reconnect: bool,
        headers: Sequence[tuple[str, str]],
        connect_timeout: float,
        max_backoff: float,
        buffer: int | float,
    ) -> None:
        query = parse_qs(urlsplit(url).query)
        self.url = url
        self.token: str | None = query["token"][-1] if "token" in query else None
        # For messages: the address without the token, which must never reach a log or a terminal.
        parts = urlsplit(url)
        self.where = f"{parts.scheme}://{parts.netloc}/"
        self.state = LiveState()
        self.filter = SeqFilter()
        self.snapshots = 0
        self.resumes = 0
        self.connections = 0
        self.close_code: int | None = None
        self._reconnect = reconnect
        self._headers = [(k.encode(), v.encode()) for k, v in headers]
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff
        self._updates_send, self._updates = trio.open_memory_channel[Update](buffer)
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._ws: WebSocketConnection | None = None
        self._connected = trio.Event()
        self._lost = trio.Event()
        self._changed = trio.Event()
        self._closed = False

    # ------------------------------------------------------------------ consuming
    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def snapshot_seq(self) -> int | None:
        return self.filter.seq

    def __aiter__(self) -> DashboardClient:
        return self

    async def __anext__(self) -> Update:
        try:
            return await self._updates.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def next_update(self) -> Update:
        return await self.__anext__()

    async def wait_disconnected(self) -> None:
        """Return once the current connection is lost (the client is then reconnecting)."""
        if self._ws is None:
            return
        await self._lost.wait()

    async def wait_connected(self) -> None:
        """Return once the stream is synchronised (again)."""
        await self._connected.wait()

    async def wait_until(self, predicate: Callable[[LiveState], bool]) -> LiveState:
        """Wait until the live state satisfies `predicate` (bound it with your own timeout)."""
        while not predicate(self.state):
            changed = self._changed
            await changed.wait()
        return self.state

    # ------------------------------------------------------------------ acting
    async def action(self, op: str, /, **fields: Any) -> Any:
        """Send `op` with `fields` and return its result, or raise `ActionFailed` with the hive's reason."""
        req = next(self._ids)
        text = encode_action(op, req, fields)
        await self._connected.wait()
        ws = self._ws
        if ws is None:
            raise ConnectionLost("the dashboard connection is closed")
        pending = self._pending[req] = _Pending()
        try:
            try:
                await ws.send_message(text)
            except (ConnectionClosed, trio.BrokenResourceError) as exc:
                raise ConnectionLost(f"could not send {op!r}: the connection dropped") from exc
            await pending.done.wait()
        finally:
            self._pending.pop(req, None)
        frame = pending.frame
        if frame is None:
            raise ConnectionLost(f"the connection dropped before {op!r} was answered; it may have happened")
        if not frame.ok:
            raise ActionFailed(frame.error or f"{op!r} failed")
        return frame.result

    # ------------------------------------------------------------------ the connection
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the connection open, reconnecting with resume until closed or refused."""
        backoff = 0.1
        started = False
        try:
            while not self._closed:
                url = stream_url(self.url, token=self.token, resume=self.filter.resume_point())
                try:
                    async with open_websocket_url(
                        url,
                        extra_headers=self._headers,
                        connect_timeout=self._connect_timeout,
                        max_message_size=MAX_MESSAGE,
                    ) as ws:
                        self.connections += 1
                        await self._read(ws, task_status if not started else None)
                        started = True
                        backoff = 0.1
                except ConnectionRejected as exc:
                    reason = (exc.body or b"").decode("utf-8", "replace").strip() or "no reason given"
                    raise DashboardRefused(exc.status_code, reason) from None
                except _CONNECT_ERRORS as exc:
                    if not started:
                        raise DashboardUnavailable(f"no dashboard at {self.where}: {_reason(exc)}") from None
                    log.info("dashboard connection lost (%s); reconnecting", exc)
                finally:
                    self._disconnected()
                if not self._reconnect:
                    return
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
        finally:
            self._closed = True
            self._connected.set()  # wake actions waiting for a connection that will not come
            self._updates_send.close()

    async def _read(self, ws: WebSocketConnection, task_status: trio.TaskStatus[None] | None) -> None:
        while True:
            try:
                text = await ws.get_message()
            except ConnectionClosed as exc:
                self.close_code = exc.reason.code if exc.reason is not None else None
                return
            try:
                frame = parse_frame(text)
            except RecordError as exc:
                log.warning("ignoring a frame the client cannot read: %s", exc)
                continue
            if frame is None:
                continue
            if isinstance(frame, ResultFrame):
                self._resolve(frame)
                continue
            if not self.filter.accept(frame):
                continue
            update: Update
            if isinstance(frame, Snapshot):
                self.snapshots += 1
                self.state.load(frame)
                update = frame
            elif isinstance(frame, ResumedFrame):
                self.resumes += 1
                update = frame
            else:
                assert isinstance(frame, EventFrame)
                self.state.apply(frame.event)
                update = frame.event
            if self._ws is None:
                # Actions may go out only once the stream is synchronised again.
                self._ws = ws
                self._lost = trio.Event()
                self._connected.set()
                if task_status is not None:
                    task_status.started()
            self._changed.set()
            self._changed = trio.Event()
            # Blocks while the consumer is not reading: the socket stops being read, the server's
            # subscription fills, and the server resyncs us. A slow reader never slows the hive.
            await self._updates_send.send(update)

    def _resolve(self, frame: ResultFrame) -> None:
        if isinstance(frame.req, int):
            pending = self._pending.get(frame.req)
            if pending is not None:
                pending.frame = frame
                pending.done.set()
                return
        log.debug("result for unknown request %r", frame.req)

    def _disconnected(self) -> None:
        if self._ws is not None:
            self._lost.set()
        self._ws = None
        self._connected = trio.Event()
        for pending in self._pending.values():
            pending.done.set()  # frame stays None: ConnectionLost

    async def reconnect(self) -> None:
        """Drop the current connection; the client reconnects and resumes from its last seq."""
        ws = self._ws
        if ws is not None:
            await ws.aclose()

    def close(self) -> None:
        self._closed = True


@asynccontextmanager
async def open_dashboard_client(
    url: str,
    *,
    reconnect: bool = True,
    headers: Sequence[tuple[str, str]] = (),
    connect_timeout: float = 10.0,
    max_backoff: float = 5.0,
    buffer: int | float = 256,
) -> AsyncIterator[DashboardClient]:
    """Connect to the dashboard at `url` (as printed by `hive-trio dashboard-url`); yield once synced.

    `buffer` bounds the updates waiting to be iterated (`math.inf` for a client that only acts and
    reads `client.state`). Raises `DashboardRefused` or `DashboardUnavailable` if the first connect fails.
    """
    client = DashboardClient(
        url,
        reconnect=reconnect,
        headers=headers,
        connect_timeout=connect_timeout,
        max_backoff=max_backoff,
        buffer=buffer,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            try:
                yield client
            finally:
                client.close()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Like trio-websocket, do not leak the nursery's group: one error is raised as itself.
        only = sole_error(group, ignoring=(trio.Cancelled,))
        if not isinstance(only, Exception):
            raise
        raise only from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRejected):
        return f"HTTP {exc.status_code}"
    # trio-websocket wraps a refused TCP connect in a bare HandshakeError; the cause says what happened.
    while not str(exc) and (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = [
    "ActionFailed",
    "ConnectionLost",
    "DashboardClient",
    "DashboardError",
    "DashboardRefused",
    "DashboardUnavailable",
    "Update",
    "open_dashboard_client",
]
