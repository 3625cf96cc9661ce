"""The dashboard server: the operator's page, `/api/state` and the `/stream` websocket on one TCP port.

hypercorn's trio worker serves a small Starlette app inside our nursery (docs/DECISIONS.md says why);
nothing HTTP is parsed here. Each websocket gets a snapshot (or a resume), then events from its own
hub subscription, and carries the operator's actions back in. Actions go to the coordinator through
`dashboard.actions`; this module must never touch the database, build a path, or block the hub.

hive-c0re streams SSE and takes form POSTs; here one websocket carries both. Kept: the seq read before
the snapshot is gathered, and a lagging subscriber that must reload (hyperhive issue #163: reload the
snapshot on every reconnect that cannot resume).
"""

from __future__ import annotations

import logging
import os
import socket
from collections import OrderedDict
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from hive_trio.coordinator import Coordinator
from hive_trio.dashboard.actions import perform
from hive_trio.dashboard.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    STATE_PATH,
    STREAM_PATH,
    TOKEN_PARAM,
    ActionError,
    ResumePoint,
    encode_event,
    encode_result,
    encode_resumed,
    encode_snapshot,
    host_allowed,
    is_loopback_host,
    origin_allowed,
    parse_action,
    parse_resume,
    token_matches,
)
from hive_trio.dashboard.token import ensure_token, http_url
from hive_trio.errors import HiveError
from hive_trio.event_hub import Resync
from hive_trio.records import DashboardAction, DashboardEvent, RequestId, unstructure

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).parent / "static"
# A peer that reads nothing for this long is cut off by the kernel (TCP_USER_TIMEOUT). hypercorn
# writes each frame inside a shielded `send_all`, so no cancel scope can bound a write to a stalled
# client; the kernel can, and that is what frees the connection's task and lets shutdown finish.
DEFAULT_STALL_TIMEOUT: Final = 5.0
# Actions one connection may have in flight; the next frame is not read until one finishes.
MAX_ACTIONS_IN_FLIGHT: Final = 16
# Results waiting for a connection that is not reading; past this the connection is closed.
RESULT_BACKLOG: Final = 64
ENCODED_CACHE: Final = 2048
# Kernel memory a peer that reads nothing can pin; past it, writes back-pressure and the hub drops it.
SEND_BUFFER: Final = 128 * 1024
# Dead peers are found by TCP keepalive, not websocket pings: hypercorn 0.18's ping task sleeps its
# whole interval before noticing a closed connection, which held every shutdown for `graceful_timeout`.
KEEPALIVE_IDLE: Final = 30
KEEPALIVE_INTERVAL: Final = 10
KEEPALIVE_PROBES: Final = 3
SECURITY_HEADERS: Final = {
    # Scripts and styles only from the dashboard itself; no framing (a hostile page cannot overlay
    # the approve button); the token in a URL never leaves in a Referer.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
# Styled by the page's own stylesheet: the CSP allows no inline style.
NEEDS_TOKEN_PAGE: Final = """<!doctype html><meta charset="utf-8"><title>hive</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/dashboard.css">
<main class="notice panel"><h1>This dashboard needs its token</h1>
<p>Open the URL that <code>hive-trio dashboard-url</code> prints on the daemon's machine.</p></main>"""
WRONG_TOKEN_PAGE: Final = NEEDS_TOKEN_PAGE.replace("needs its token", "did not accept that token")


class DashboardServer:
    """The app and the live connections of one dashboard; `serve_dashboard` runs it."""

    def __init__(self, coord: Coordinator, *, token: str, public: bool, page: str) -> None:
        self.coord = coord
        self.token = token
        self.public = public
        self.page = page
        self.closing = trio.Event()
        self.connections: set[StreamConnection] = set()
        self.cookie_name = "hive_trio_token"
        self._actions: trio.Nursery | None = None
        self._encoded: OrderedDict[int, str] = OrderedDict()

    # ------------------------------------------------------------------ app
    def app(self) -> ASGIApp:
        routes = [
            Route("/", self.page_route, methods=["GET", "HEAD"]),
            Route(STATE_PATH, self.state_route, methods=["GET"]),
            WebSocketRoute(STREAM_PATH, self.stream_route),
            Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        ]
        return _HostGuard(Starlette(routes=routes), public=self.public)

    def set_port(self, port: int) -> None:
        # Cookies ignore ports: two hives on one host must not overwrite each other's token.
        self.cookie_name = f"hive_trio_token_{port}"

    def _authorised(self, query: str | None, cookie: str | None) -> bool:
        return token_matches(self.token, query) or token_matches(self.token, cookie)

    async def page_route(self, request: Request) -> Response:
        offered = request.query_params.get(TOKEN_PARAM)
        if offered is not None and not token_matches(self.token, offered):
            return HTMLResponse(WRONG_TOKEN_PAGE, status_code=403, headers=SECURITY_HEADERS)
        if offered is None and not token_matches(self.token, request.cookies.get(self.cookie_name)):
            return HTMLResponse(NEEDS_TOKEN_PAGE, status_code=401, headers=SECURITY_HEADERS)
        response = HTMLResponse(self.page, headers=SECURITY_HEADERS)
        if offered is not None:
            # A session cookie: gone when the browser closes; never sent cross-site, never seen by JS.
            response.set_cookie(self.cookie_name, self.token, httponly=True, samesite="strict", path="/")
        return response

    async def state_route(self, request: Request) -> Response:
        if not self._authorised(request.query_params.get(TOKEN_PARAM), request.cookies.get(self.cookie_name)):
            return PlainTextResponse("dashboard token missing or wrong\n", status_code=401, headers=SECURITY_HEADERS)
        try:
            snapshot = await self.coord.snapshot()
        except HiveError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=503, headers=SECURITY_HEADERS)
        return JSONResponse(unstructure(snapshot), headers=SECURITY_HEADERS)

    async def stream_route(self, ws: WebSocket) -> None:
        headers = ws.headers
        if not origin_allowed(headers.get("origin"), headers.get("host")):
            log.warning("refused a dashboard websocket from foreign origin %r", headers.get("origin"))
            await _refuse(ws, 403, "websocket from a foreign origin refused\n")
            return
        if not self._authorised(ws.query_params.get(TOKEN_PARAM), ws.cookies.get(self.cookie_name)):
            await _refuse(ws, 401, "dashboard token missing or wrong\n")
            return
        if self.closing.is_set():
            await _refuse(ws, 503, "the daemon is shutting down\n")
            return
        await ws.accept()
        conn = StreamConnection(self, ws, resume=parse_resume(dict(ws.query_params)))
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    # ------------------------------------------------------------------ shared work
    def encoded(self, event: DashboardEvent) -> str:
        """Each event is encoded once however many connections send it."""
        frame = self._encoded.get(event.seq)
        if frame is None:
            frame = self._encoded[event.seq] = encode_event(event)
            if len(self._encoded) > ENCODED_CACHE:
                self._encoded.popitem(last=False)
        return frame

    def sever_connections(self) -> int:
        """Cut every open stream's TCP connection from under hypercorn (used only past the shutdown deadline)."""
        return sum(_sever(conn.ws.scope.get("server"), conn.ws.scope.get("client")) for conn in list(self.connections))

    def start_action(self, conn: StreamConnection, action: DashboardAction) -> None:
        # Actions run in the server's nursery, not the connection's: an operator who closes the tab
        # mid-restart must not cancel the restart. Only the daemon shutting down cancels them.
        assert self._actions is not None
        self._actions.start_soon(conn.run_action, action)

    async def serve(
        self,
        hypercorn_config: HypercornConfig,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run hypercorn until `closing` is set. Shielded: the graceful close is ours to run, by deadline."""
        async with trio.open_nursery() as actions:
            self._actions = actions
            try:
                app: Any = self.app()  # Starlette's ASGI types are looser than hypercorn's
                await hypercorn_serve(
                    app, hypercorn_config, shutdown_trigger=self.closing.wait, task_status=task_status
                )
            finally:
                actions.cancel_scope.cancel()


class StreamConnection:
    """One accepted `/stream` websocket: a pump (events out), a reader (actions in), a result writer."""

    def __init__(self, server: DashboardServer, ws: WebSocket, *, resume: ResumePoint | None) -> None:
        self.server = server
        self.coord = server.coord
        self.ws = ws
        self.resume = resume
        self.close_code: int | None = None
        self.resyncs = 0
        # Two writers (events, results) share the socket. Trio is cooperative, so a flag is the lock;
        # unlike a trio.Lock it costs no extra scheduling round trip when uncontended, which is nearly
        # always, and a fan-out to a thousand subscribers pays it a thousand times (docs/PERFORMANCE.md).
        self._writing = False
        self._writer_free = trio.lowlevel.ParkingLot()
        self._scope = trio.CancelScope()
        self._slots = trio.Semaphore(MAX_ACTIONS_IN_FLIGHT)
        self._results_send, self._results = trio.open_memory_channel[str](RESULT_BACKLOG)
        self._gone = False

    async def run(self) -> None:
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump)
                nursery.start_soon(self._read_actions)
                nursery.start_soon(self._write_results)
                nursery.start_soon(self._close_on_shutdown)
        self._results_send.close()
        if not self._gone:
            with trio.move_on_after(1.0), suppress(*_SEND_ERRORS):
                await self.ws.close(self.close_code or CLOSE_GOING_AWAY)

    def _finish(self, code: int | None) -> None:
        if self.close_code is None:
            self.close_code = code
        self._scope.cancel()

    async def _send(self, text: str) -> None:
        while self._writing:
            await self._writer_free.park()
        self._writing = True
        try:
            # No shield of our own: hypercorn writes each frame's bytes in a shielded `send_all`, and a
            # cancel that lands before it (dropping a frame) only ever comes when this stream is ending,
            # so no later frame can depend on it (permessage-deflate state). A scope per frame costs.
            await self.ws.send_text(text)
        except _SEND_ERRORS:
            self._gone = True
            self._finish(None)
        finally:
            self._writing = False
            self._writer_free.unpark()

    async def _close_on_shutdown(self) -> None:
        await self.server.closing.wait()
        self._finish(CLOSE_GOING_AWAY)

    # ------------------------------------------------------------------ events out
    async def _pump(self) -> None:
        hub = self.coord.hub
        resume = self.resume
        while True:
            # Subscribe *before* the snapshot: every event after its seq is then in the subscription.
            with hub.subscribe() as sub:
                try:
                    last = await self._start_point(resume)
                except HiveError:
                    log.exception("dashboard snapshot failed; closing the stream")
                    self._finish(1011)
                    return
                async for item in sub:
                    if isinstance(item, Resync):
                        break
                    if item.seq <= last:
                        continue
                    await self._send(self.server.encoded(item))
                    last = item.seq
                else:
                    return
            # Fell behind its bounded channel: the hub dropped it without waiting. Reload in full.
            self.resyncs += 1
            resume = None

    async def _start_point(self, resume: ResumePoint | None) -> int:
        hub = self.coord.hub
        if resume is not None and resume.epoch == self.coord.epoch:
            missed = hub.replay_since(resume.since)
            if missed is not None:
                await self._send(encode_resumed(resume.since, resume.epoch))
                last = resume.since
                for event in missed:
                    await self._send(self.server.encoded(event))
                    last = event.seq
                return last
        snapshot = await self.coord.snapshot()
        await self._send(encode_snapshot(snapshot))
        return snapshot.seq

    # ------------------------------------------------------------------ actions in
    async def _read_actions(self) -> None:
        while True:
            try:
                message = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                message = {"type": "websocket.disconnect"}
            if message["type"] == "websocket.disconnect":
                self._gone = True
                self._finish(None)
                return
            text = message.get("text")
            try:
                action = parse_action(text if text is not None else message.get("bytes") or b"")
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
        async for frame in self._results:
            await self._send(frame)


_SEND_ERRORS: Final = (WebSocketDisconnect, RuntimeError, OSError, trio.BrokenResourceError, trio.ClosedResourceError)


async def _refuse(ws: WebSocket, status: int, text: str) -> None:
    """Refuse the handshake with an HTTP status and a reason where the server supports it."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(PlainTextResponse(text, status_code=status))
    else:
        await ws.close(code=CLOSE_POLICY)


def _sever(local: Any, peer: Any) -> bool:
    """Shut down the one socket of ours connecting `local` to `peer`, found among our open descriptors.

    hypercorn never hands the app its transport and writes inside a shielded scope, so a peer that
    stopped reading would hold shutdown until the kernel's TCP_USER_TIMEOUT. `shutdown()` on a dup of
    the descriptor fails that write at once. Linux only, like TCP_USER_TIMEOUT; the daemon is Linux.
    """
    if not local or not peer:
        return False
    want = (tuple(local)[:2], tuple(peer)[:2])
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        return False
    for fd in fds:
        try:
            copy = os.dup(fd)
        except OSError:
            continue  # already gone (the listing's own descriptor, for one)
        try:
            dup = socket.socket(fileno=copy)
        except OSError:
            os.close(copy)  # not a socket
            continue
        with dup:
            try:
                if dup.type != socket.SOCK_STREAM or (dup.getsockname()[:2], dup.getpeername()[:2]) != want:
                    continue
                dup.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue
            return True
    return False


class _HostGuard:
    """On a loopback bind, serve only requests addressed to a loopback name (defeats DNS rebinding)."""

    def __init__(self, app: ASGIApp, *, public: bool) -> None:
        self.app = app
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not host_allowed(
            Headers(scope=scope).get("host"), public=self.public
        ):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": CLOSE_POLICY, "reason": ""})
            else:
                await PlainTextResponse("unexpected Host for a loopback dashboard\n", status_code=421)(
                    scope, receive, send
                )
            return
        await self.app(scope, receive, send)


# ---------------------------------------------------------------------------------- entry point


async def _bind(host: str, port: int, *, public_allowed: bool, stall_timeout: float) -> tuple[socket.socket, bool]:
    """Bind the listening socket ourselves: clear errors, and TCP options hypercorn does not set."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise HiveError(f"dashboard_host {host!r} does not resolve: {exc}") from None
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
        # Inherited by every accepted connection (Linux); see DEFAULT_STALL_TIMEOUT.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, int(stall_timeout * 1000)))
        # Interactive frames: never hold one back behind an unacknowledged one (Nagle).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Bounds the kernel memory a reader that never reads can pin, and makes it back-pressure (and
        # be dropped by the hub) after a few hundred KiB rather than the 4 MiB autotuning allows.
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
        raise HiveError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc}") from None
    return sock, not loopback


async def serve_dashboard(
    coord: Coordinator,
    *,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the dashboard until cancelled; `task_status.started(url)` once it accepts connections.

    Sets `coord.dashboard_url` and writes it to `coord.paths.dashboard_url_file`. On cancellation every
    websocket is closed with 1001 and hypercorn is given `config.shutdown_grace` to finish, shielded.
    """
    config = coord.config
    token = await trio.to_thread.run_sync(ensure_token, coord.paths.dashboard_token)
    page = await trio.to_thread.run_sync(lambda: (STATIC_DIR / "index.html").read_text(encoding="utf-8"))
    sock, public = await _bind(
        config.dashboard_host,
        config.dashboard_port,
        public_allowed=config.dashboard_public,
        stall_timeout=stall_timeout,
    )
    server = DashboardServer(coord, token=token, public=public, page=page)
    server.set_port(sock.getsockname()[1])
    hc = HypercornConfig()
    hc.bind = [f"fd://{sock.detach()}"]
    hc.graceful_timeout = config.shutdown_grace
    hc.websocket_max_message_size = config.max_frame_bytes
    hc.websocket_ping_interval = None
    hc.include_server_header = False
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hive_trio.dashboard.http")
    hc.backlog = 1024
    done = trio.Event()

    async def run_http(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            with trio.CancelScope(shield=True) as scope:
                http_scope.append(scope)
                await server.serve(hc, task_status=task_status)
        finally:
            done.set()

    http_scope: list[trio.CancelScope] = []
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(run_http)
        host, port = _host_port(binds[0])
        url = http_url(host, port)
        coord.dashboard_url = url
        await trio.to_thread.run_sync(partial(_write_url, coord.paths.dashboard_url_file, url))
        log.info("dashboard on %s", url)
        try:
            task_status.started(url)
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                server.closing.set()
                with trio.move_on_after(config.shutdown_grace):
                    await done.wait()
                if not done.is_set():
                    # Whoever is left is stuck in a shielded write to a peer that reads nothing.
                    severed = server.sever_connections()
                    log.warning("dashboard shutdown: cut %d stalled connection(s)", severed)
                    with trio.move_on_after(1.0):
                        await done.wait()
                for scope in http_scope:
                    scope.cancel()
                coord.dashboard_url = None
                await trio.to_thread.run_sync(partial(_remove_url, coord.paths.dashboard_url_file, url))


def _host_port(bind: str) -> tuple[str, int]:
    hostport = bind.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def _write_url(path: Path, url: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(url + "\n", encoding="utf-8")
    tmp.replace(path)


def _remove_url(path: Path, url: str) -> None:
    # Only our own: a second daemon cannot share the state dir, but a stale file from a crash can be here.
    with suppress(OSError):
        if path.read_text(encoding="utf-8").strip() == url:
            path.unlink()


__all__ = ["DEFAULT_STALL_TIMEOUT", "DashboardServer", "StreamConnection", "serve_dashboard"]
