"""The dashboard server: the operator's page, `/api/state` and the `/stream` websocket on one TCP port.

Our own trio listener; one task per connection reads request heads with h11 and asks `routes` what
each gets. A websocket upgrade to `/stream` is handed, bytes and all, to trio-websocket (wsproto does
the handshake); everything else is answered with h11, with keep-alive. Each websocket gets a snapshot
(or a resume), then events from its own hub subscription, and carries the operator's actions back in.
Actions go to the coordinator through `dashboard.actions`; this module must never touch the database,
build a hive path, parse HTTP itself, or block the hub.

hive-c0re streams SSE and takes form POSTs; here one websocket carries both. Kept: the seq read before
the snapshot is gathered, and a lagging subscriber that must reload (hyperhive issue #163: reload the
snapshot on every reconnect that cannot resume).
"""

from __future__ import annotations

import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any, Final, NoReturn

import h11
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from hive_trio.core.coordinator import Coordinator
from hive_trio.core.event_hub import HubItem, Resync, Subscription
from hive_trio.dashboard.actions import perform
from hive_trio.dashboard.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_TRY_AGAIN,
    ActionError,
    ResumePoint,
    encode_event,
    encode_result,
    encode_resumed,
    encode_snapshot,
    is_loopback_host,
    parse_action,
    text_frame,
)
from hive_trio.dashboard.routes import (
    JSON,
    TEXT,
    HttpRequest,
    OpenStream,
    ReadState,
    RefuseStream,
    Reply,
    Site,
    StaticFile,
    error_reply,
    route,
    text_reply,
)
from hive_trio.dashboard.token import ensure_token, http_url
from hive_trio.dashboard.transport import (
    MAX_REQUEST_HEAD,
    ConnectionStream,
    receive_request,
    send_reply,
    serve_stall_watch,
)
from hive_trio.errors import HiveError
from hive_trio.records import DashboardAction, DashboardEvent, RequestId, to_json
from hive_trio.rules.strict_dirs import UnsafePath, read_regular, write_replacing

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).parent / "static"
_STATIC_ROOT: Final = STATIC_DIR.resolve()
# A write that makes no progress for this long cuts its connection (the peer stopped reading). Only
# that connection's own task ever waits for it; the hub has usually dropped it long before. Same as
# the TCP_USER_TIMEOUT the hypercorn version set.
DEFAULT_STALL_TIMEOUT: Final = 5.0
# A request head must be complete within this long of when the connection started waiting for it;
# it doubles as the idle keep-alive timeout. Slow-loris clients hold a task for at most this.
HEAD_TIMEOUT: Final = 10.0
# Request line plus headers; past it, 431. Browsers send ~1-2 KiB, cookies included.
# How long a connection closed after an error reply keeps reading (and dropping) what the peer still
# sends, so that the reply is not destroyed by a reset.
LINGER_TIMEOUT: Final = 1.0
# How long a websocket close handshake may take before the socket is simply closed.
CLOSE_TIMEOUT: Final = 1.0
# Actions one connection may have in flight; the next frame is not read until one finishes.
MAX_ACTIONS_IN_FLIGHT: Final = 16
# Results waiting for a connection that is not reading; past this the connection is closed.
RESULT_BACKLOG: Final = 64
ENCODED_CACHE: Final = 2048
# The fan-out yields to other tasks after this many connections (a 1,000-subscriber pass takes ~10 ms).
FAN_OUT_SLICE: Final = 128
# Kernel memory a peer that reads nothing can pin; past it, writes back-pressure and the hub drops it.
SEND_BUFFER: Final = 128 * 1024
# Dead idle peers are found by TCP keepalive; websockets get no pings (nothing to tune, nothing to
# hold a shutdown). A peer that vanishes with data in flight is caught by the stall timeout instead.
KEEPALIVE_IDLE: Final = 30
KEEPALIVE_INTERVAL: Final = 10
KEEPALIVE_PROBES: Final = 3


class DashboardServer:
    """The routes, the live connections and the shutdown of one dashboard; `serve_dashboard` runs it."""

    def __init__(self, coord: Coordinator, *, site: Site, stall_timeout: float = DEFAULT_STALL_TIMEOUT) -> None:
        self.coord = coord
        self.site = site
        self.stall_timeout = stall_timeout
        self.closing = trio.Event()
        self.connections: set[StreamConnection] = set()
        self.streams: set[ConnectionStream] = set()  # every open TCP connection, for the stall watch
        self._waiting: set[trio.CancelScope] = set()  # HTTP connections waiting for a request head
        self._accepting = trio.CancelScope()
        self._actions: trio.Nursery | None = None
        self._framed: OrderedDict[int, bytes] = OrderedDict()
        self.frames_written = 0  # event frames handed to the kernel (a benchmark's probe)

    # ------------------------------------------------------------------ the server's life
    async def serve(
        self,
        listener: trio.SocketListener,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve connections until `closing` is set, then return once every one of them has finished.

        On `closing` it stops accepting, closes idle HTTP connections and every websocket (1001). The
        caller bounds how long that may take (`serve_dashboard` cancels what is left at its deadline).
        """
        async with trio.open_nursery() as actions:
            self._actions = actions
            # Checked a few times per timeout: a stalled peer is cut between 1 and 1.25 timeouts.
            actions.start_soon(partial(serve_stall_watch, self.streams, interval=min(1.0, self.stall_timeout / 4)))
            await actions.start(self._fan_out)
            async with trio.open_nursery() as connections:
                await connections.start(self._accept, listener, connections)
                task_status.started()
                await self.closing.wait()
                self._accepting.cancel()
                for scope in list(self._waiting):
                    scope.cancel()
            # Actions outlive their connection, not the dashboard; the stall watch goes with them.
            actions.cancel_scope.cancel()

    async def _accept(
        self,
        listener: trio.SocketListener,
        connections: trio.Nursery,
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        # A scope of its own: cancelling it stops accepting (and closes the listener) while the
        # connections, which live in `connections`, carry on to their graceful close.
        with self._accepting:
            await trio.serve_listeners(
                self.handle_connection, [listener], handler_nursery=connections, task_status=task_status
            )

    # ------------------------------------------------------------------ one connection
    async def handle_connection(self, socket_stream: trio.SocketStream) -> None:
        """Serve one TCP connection: HTTP requests with keep-alive, or one websocket."""
        stream = ConnectionStream(socket_stream, stall_timeout=self.stall_timeout)
        self.streams.add(stream)
        try:
            await self._serve_http(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if stream.stalled:
                log.warning("a dashboard client read nothing for %g s; cut it", self.stall_timeout)
        except Exception:
            # One connection's failure is logged and ends that connection, never the dashboard.
            log.exception("dashboard connection failed")
        finally:
            self.streams.discard(stream)
            await trio.aclose_forcefully(stream)

    async def _serve_http(self, stream: ConnectionStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        while True:
            # Every byte h11 is given for this request, so a websocket handshake can be replayed.
            head = bytearray(conn.trailing_data[0])
            got = await self._next_request(conn, stream, head)
            if got is None:
                return
            if isinstance(got, Reply):
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await send_reply(conn, stream, got, head_only=False)
                    with trio.move_on_after(LINGER_TIMEOUT):
                        await stream.linger()
                return
            request = HttpRequest.from_h11(got)
            decision = route(request, self.site, closing=self.closing.is_set())
            if isinstance(decision, OpenStream | RefuseStream):
                stream.replay(bytes(head))
                await self._serve_stream(stream, decision)
                return
            reply = await self._reply_for(decision)
            await send_reply(conn, stream, reply, head_only=request.method == "HEAD")
            if conn.their_state in (h11.SEND_BODY, h11.ERROR):
                with trio.move_on_after(LINGER_TIMEOUT):
                    await stream.linger()  # a request body we did not read
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # HTTP/1.0, or `Connection: close`
            conn.start_next_cycle()

    async def _next_request(
        self, conn: h11.Connection, stream: ConnectionStream, head: bytearray
    ) -> h11.Request | Reply | None:
        """The next request; a `Reply` to answer before closing (bad head, timeout); None to just close."""
        if self.closing.is_set():
            return None
        with trio.move_on_after(HEAD_TIMEOUT) as waiting:
            self._waiting.add(waiting)
            try:
                return await receive_request(conn, stream, head)
            except h11.RemoteProtocolError as exc:
                return error_reply(exc.error_status_hint)
            finally:
                self._waiting.discard(waiting)
        # Timed out, or the dashboard is closing. A client that sent part of a head is told why.
        if head and not self.closing.is_set():
            return error_reply(408)
        return None

    async def _reply_for(self, decision: Reply | StaticFile | ReadState) -> Reply:
        if isinstance(decision, Reply):
            return decision
        if isinstance(decision, StaticFile):
            body = await trio.to_thread.run_sync(_read_static, decision.name)
            if body is None:
                return text_reply(404, "no such file")
            return Reply(200, body, decision.content_type)
        try:
            snapshot = await self.coord.snapshot()
        except HiveError as exc:
            return text_reply(503, str(exc))
        body = to_json(snapshot).encode()
        return Reply(200, body, JSON)

    async def _serve_stream(self, stream: ConnectionStream, decision: OpenStream | RefuseStream) -> None:
        # trio-websocket's reader task for this connection lives here, and goes when the stream ends.
        async with trio.open_nursery() as nursery:
            try:
                await self._handshake_and_run(nursery, stream, decision)
            except ConnectionClosed:
                pass  # the peer left during the handshake
            finally:
                nursery.cancel_scope.cancel()

    async def _handshake_and_run(
        self, nursery: trio.Nursery, stream: ConnectionStream, decision: OpenStream | RefuseStream
    ) -> None:
        request = await self._handshake(nursery, stream)
        if request is None:
            return  # not a valid handshake: wsproto answered 400 and closed
        if isinstance(decision, RefuseStream):
            if decision.status == 403:
                log.warning("refused a dashboard websocket from a foreign origin")
            body = f"{decision.reason}\n".encode()
            await request.reject(decision.status, extra_headers=[(b"Content-Type", TEXT.encode())], body=body)
            return
        ws = await request.accept()
        conn = StreamConnection(self, ws, stream, resume=decision.resume)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    async def _handshake(self, nursery: trio.Nursery, stream: ConnectionStream) -> WebSocketRequest | None:
        """The handshake as wsproto reads it from the replayed head; None if it refused it.

        wsproto answers a malformed handshake (no key, wrong version) with 400 and closes the stream
        without ever producing a request; the stream's close ends this wait instead of the timeout.
        """
        with trio.move_on_after(HEAD_TIMEOUT) as waiting:
            stream.on_close(waiting.cancel)
            return await trio_websocket.wrap_server_stream(
                nursery, stream, max_message_size=self.coord.config.max_frame_bytes
            )
        return None

    # ------------------------------------------------------------------ shared work
    def framed(self, event: DashboardEvent) -> bytes:
        """Each event is encoded and framed once however many connections send it.

        Server frames are unmasked and this server negotiates no extension, so every subscriber's
        websocket gets the very same bytes.
        """
        frame = self._framed.get(event.seq)
        if frame is None:
            frame = self._framed[event.seq] = text_frame(encode_event(event))
            if len(self._framed) > ENCODED_CACHE:
                self._framed.popitem(last=False)
        return frame

    async def _fan_out(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """After each burst of events, write them to every caught-up subscriber from this one task.

        The hub's bell only wakes it: every connection still reads its own subscription
        (so its bound, its Resync and its order are the hub's), and a connection whose socket cannot
        take a frame at once is left to its own task, so a stalled one costs the others one failed
        `send_nowait` call. One task writing 1,000 sockets replaces 1,000 task wake-ups and
        trio-websocket's per-frame lock and framing (docs/PERFORMANCE.md, "Dashboard fan-out").
        """
        with self.coord.event_bell() as bell:
            task_status.started()
            while True:
                await bell.wait()
                for i, conn in enumerate(list(self.connections)):
                    conn.deliver_live()
                    if i % FAN_OUT_SLICE == FAN_OUT_SLICE - 1:
                        await trio.lowlevel.checkpoint()  # let other work in between slices
        raise AssertionError("unreachable")

    def start_action(self, conn: StreamConnection, action: DashboardAction) -> None:
        # Actions run in the server's nursery, not the connection's: an operator who closes the tab
        # mid-restart must not cancel the restart. Only the dashboard stopping cancels them.
        assert self._actions is not None
        self._actions.start_soon(conn.run_action, action)


class StreamConnection:
    """One accepted `/stream` websocket: a pump (events out), a reader (actions in), a result writer.

    Nothing cancels a write half-way but the dashboard's own shutdown deadline: `_finish` ends the
    pump and the result writer by closing what they wait on, so a frame in flight is completed (or
    cut by the stall timeout) and the close frame that follows is readable.
    """

    def __init__(
        self, server: DashboardServer, ws: WebSocketConnection, stream: ConnectionStream, *, resume: ResumePoint | None
    ) -> None:
        self.server = server
        self.coord = server.coord
        self.ws = ws
        self.stream = stream
        self.resume = resume
        self.close_code: int | None = None
        self.resyncs = 0
        self._finished = False
        self._gone = False
        self._listening = trio.CancelScope()
        self._sub: Subscription | None = None
        self._last = 0  # the seq of the last event written (or in the snapshot)
        self._live = False  # caught up and asleep: the server's fan-out writes for it
        self._wake = trio.Event()
        self._held: HubItem | None = None  # taken by the fan-out, left for `_pump`
        self._slots = trio.Semaphore(MAX_ACTIONS_IN_FLIGHT)
        self._results_send, self._results = trio.open_memory_channel[str](RESULT_BACKLOG)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump)
            nursery.start_soon(self._write_results)
            nursery.start_soon(self._listen)
        if not self._gone:
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self.ws.aclose(self.close_code or CLOSE_GOING_AWAY)

    def _finish(self, code: int | None) -> None:
        """End this connection: stop reading, and let the writers run dry after their current frame."""
        if self._finished:
            return
        self._finished = True
        self.close_code = code
        self._listening.cancel()
        if self._sub is not None:
            self._sub.receive.close()
        self._wake.set()
        self._results.close()

    async def _send(self, text: str) -> None:
        if self._finished:
            return
        try:
            # trio-websocket serialises writers (a FIFO lock) and the stream bounds the write.
            await self.ws.send_message(text)
        except ConnectionClosed:
            self._gone = True
            self._finish(None)
            if self.stream.stalled:
                log.warning("a dashboard client read nothing for %g s; cut it", self.stream.stall_timeout)

    async def _listen(self) -> None:
        with self._listening:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_actions)
                await self.server.closing.wait()
                self._finish(CLOSE_GOING_AWAY)

    # ------------------------------------------------------------------ events out
    async def _pump(self) -> None:
        """Snapshot (or resume), then events in seq order until finished; a resync reloads in full.

        While this connection is `live` (caught up, nothing pending) the server's fan-out writes its
        events, framed once for everyone, straight to the socket (`deliver_live`), and this task
        sleeps. It takes over whenever that cannot finish a frame without waiting: a busy or full
        socket, a Resync. Either way the events come from this connection's own hub subscription,
        whose bound is what a subscriber may hold.
        """
        resume = self.resume
        while not self._finished:
            # Subscribe *before* the snapshot: every event after its seq is then in the subscription.
            with self.coord.subscribe() as sub:
                self._sub = sub
                try:
                    self._last = await self._start_point(resume)
                except HiveError:
                    log.exception("dashboard snapshot failed; closing the stream")
                    self._finish(1011)
                    return
                if not await self._catch_up(sub):
                    return  # finished
            # Fell behind its bounded channel: the hub dropped it without waiting. Reload in full.
            self.resyncs += 1
            resume = None

    async def _catch_up(self, sub: Subscription) -> bool:
        """Write what the subscription holds, then sleep while the fan-out writes; True: resync."""
        while not self._finished:
            if self.stream.pending:
                await self._write(self.stream.flush())
                continue
            item, self._held = self._held, None
            if item is None:
                try:
                    item = sub.receive.receive_nowait()
                except trio.WouldBlock:
                    self._live = True
                    await self._wake.wait()
                    self._wake = trio.Event()
                    self._live = False
                    continue
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    return False
            if isinstance(item, Resync):
                return True
            if self.ws.closed is not None:
                return False  # closing: no data frame may follow the close frame; the reader finishes us
            if item.seq > self._last:
                await self._write(self.stream.send_all(self.server.framed(item)))
                self._last = item.seq
                self.server.frames_written += 1
        return False

    def deliver_live(self) -> None:
        """The fan-out's turn: write this connection's waiting events now, without a task switch.

        Whatever cannot go out at once (busy or full socket, a Resync, the end) wakes `_pump`.
        """
        sub = self._sub
        if not self._live or sub is None:
            return
        while True:
            try:
                item = sub.receive.receive_nowait()
            except trio.WouldBlock:
                return
            except (trio.EndOfChannel, trio.ClosedResourceError):
                self._wake.set()
                return
            if isinstance(item, Resync) or self.ws.closed is not None:
                self._held = item  # for `_pump`, which knows what a Resync or a close means
                self._wake.set()
                return
            if item.seq <= self._last:
                continue
            if not self.stream.send_nowait(self.server.framed(item)):
                self._held = item
                self._wake.set()
                return
            self._last = item.seq
            self.server.frames_written += 1
            if self.stream.pending:
                self._wake.set()
                return

    async def _write(self, write: Awaitable[None]) -> None:
        """Await one raw write of ours (framed bytes); a cut stream finishes this connection."""
        try:
            await write
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._gone = True
            self._finish(None)
            if self.stream.stalled:
                log.warning("a dashboard client read nothing for %g s; cut it", self.stream.stall_timeout)

    async def _start_point(self, resume: ResumePoint | None) -> int:
        if resume is not None and resume.epoch == self.coord.epoch:
            missed = self.coord.replay_since(resume.since)
            if missed is not None:
                await self._send(encode_resumed(resume.since, resume.epoch))
                last = resume.since
                for event in missed:
                    await self._write(self.stream.send_all(self.server.framed(event)))
                    last = event.seq
                return last
        snapshot = await self.coord.snapshot()
        await self._send(encode_snapshot(snapshot))
        return snapshot.seq

    # ------------------------------------------------------------------ actions in
    async def _read_actions(self) -> None:
        while True:
            try:
                message = await self.ws.get_message()
            except ConnectionClosed:
                # The peer closed, or trio-websocket closed it (1009 for an oversized frame).
                self._gone = True
                self._finish(None)
                return
            try:
                action = parse_action(message)
            except ActionError as exc:
                self._deliver(encode_result(exc.req, ok=False, error=str(exc)))
                continue
            await self._slots.acquire()
            self.server.start_action(self, action)

    async def run_action(self, action: DashboardAction) -> None:
        req: RequestId = action.req
        try:
            result: Any = await perform(self.coord, action)
            frame = encode_result(req, ok=True, result=result)
        except HiveError as exc:
            frame = encode_result(req, ok=False, error=str(exc))
        except Exception as exc:
            log.exception("dashboard action %r failed", action)
            frame = encode_result(req, ok=False, error=f"internal error ({type(exc).__name__}); see the daemon log")
        finally:
            self._slots.release()
        self._deliver(frame)

    def _deliver(self, frame: str) -> None:
        try:
            self._results_send.send_nowait(frame)
        except trio.WouldBlock:
            log.warning("a dashboard client stopped reading its results; closing it")
            self._finish(CLOSE_TRY_AGAIN)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the operator left; the action's effect is in the next snapshot

    async def _write_results(self) -> None:
        while True:
            try:
                frame = await self._results.receive()
            except trio.ClosedResourceError:
                return
            await self._send(frame)


def _read_static(name: str) -> bytes | None:
    """A file under the static directory; `name` was checked by `routes.static_name`, and is checked again."""
    path = (STATIC_DIR / name).resolve()
    if not path.is_relative_to(_STATIC_ROOT) or not path.is_file():
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


# ---------------------------------------------------------------------------------- entry point


def _bind(host: str, port: int, infos: list[Any], *, public_allowed: bool) -> tuple[socket.socket, bool]:
    """Bind the listening socket ourselves: clear errors, and TCP options every connection inherits."""
    loopback = is_loopback_host(host) or all(is_loopback_host(str(info[4][0])) for info in infos)
    if not loopback and not public_allowed:
        raise HiveError(
            f"dashboard_host {host!r} is not a loopback address; set dashboard_public = true to serve the "
            "dashboard beyond this machine (its token is still required)"
        )
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Bounds the kernel memory a reader that never reads can pin, and makes it back-pressure (and
        # be dropped by the hub, then cut by the stall timeout) after a few hundred KiB rather than
        # the 4 MiB autotuning allows. (trio sets TCP_NODELAY on every accepted stream itself.)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise HiveError(
            f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc}; "
            "pick another address with --dashboard HOST:PORT (or dashboard_port in the config)"
        ) from None
    return sock, not loopback


async def _listen(host: str, port: int, *, public_allowed: bool) -> tuple[trio.SocketListener, bool]:
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise HiveError(f"dashboard_host {host!r} does not resolve: {exc}") from None
    sock, public = _bind(host, port, list(infos), public_allowed=public_allowed)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock)), public


async def serve_dashboard(
    coord: Coordinator,
    *,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the dashboard until cancelled; `task_status.started(url)` once it accepts connections.

    Writes the URL to `coord.paths.dashboard_url_file`; the assembly gives it to the coordinator.
    On cancellation it closes every websocket with 1001 and gives everything `config.shutdown_grace` to finish; whatever
    is still running then (a write to a peer that reads nothing) is cancelled and its socket reset.
    """
    config = coord.config
    token = await trio.to_thread.run_sync(ensure_token, coord.paths.dashboard_token)
    page = await trio.to_thread.run_sync(lambda: (STATIC_DIR / "index.html").read_text(encoding="utf-8"))
    listener, public = await _listen(
        config.dashboard_host, config.dashboard_port, public_allowed=config.dashboard_public
    )
    host, port = listener.socket.getsockname()[:2]
    # Cookies ignore ports: two hives on one host must not overwrite each other's token.
    site = Site(token=token, cookie_name=f"hive_trio_token_{port}", public=public, page=page)
    server = DashboardServer(coord, site=site, stall_timeout=stall_timeout)
    # Shielded, so the outer cancellation does not cut the graceful close short; its own deadline,
    # set when closing starts, is what ends it (hypercorn's shutdown, by deadline).
    server_scope = trio.CancelScope(shield=True)
    stopped = trio.Event()

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        try:
            with server_scope:
                await server.serve(listener, task_status=task_status)
        finally:
            stopped.set()

    url: str | None = None
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(run)
            url = http_url(host, port)
            await trio.to_thread.run_sync(partial(_write_url, coord.paths.dashboard_url_file, url))
            log.info("dashboard on %s", url)
            task_status.started(url)
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                server.closing.set()
                server_scope.deadline = trio.current_time() + config.shutdown_grace
                await stopped.wait()
                if url is not None:
                    await trio.to_thread.run_sync(partial(_remove_url, coord.paths.dashboard_url_file, url))
    raise AssertionError("unreachable: serve_dashboard ends only by cancellation")


def _write_url(path: Path, url: str) -> None:
    write_replacing(path, (url + "\n").encode(), 0o644)


def _remove_url(path: Path, url: str) -> None:
    # Only our own: a second daemon cannot share the state dir, but a stale file from a crash can be here.
    with suppress(OSError, UnsafePath, UnicodeDecodeError):
        if read_regular(path).decode("utf-8").strip() == url:
            path.unlink()


__all__ = ["DEFAULT_STALL_TIMEOUT", "DashboardServer", "StreamConnection", "serve_dashboard"]
