"""Shared pieces for the dashboard tests: a hive with its dashboard on port 0, and a lifecycle double.

The approve/deny/lifecycle round trip is tested against the real `Lifecycle` (real child processes).
`RecordingLifecycle` is kept for what the real one cannot be made to do on cue: hold an action open
(to see the spinner, a `Busy` refusal, an operator leaving mid-action) and show an apply_commit
approval with a diff without building a git history. It resolves approvals the way the real one does
(store CAS, then `coord.approval_resolved`), so the stream sees the same events.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h11
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from hive_trio.core.coordinator import Coordinator, LifecycleFactory
from hive_trio.daemon import Hive, open_hive
from hive_trio.dashboard.protocol import ResumePoint, stream_url
from hive_trio.dashboard.token import dashboard_url
from hive_trio.errors import HiveError, NotFound
from hive_trio.lifecycle.bare import BareLifecycle
from hive_trio.records import AgentRecord, Approval, ApprovalKind, ApprovalStatus, TransientKind
from hive_trio.rules.config import Config


def dashboard_config(config: Config, **changes: Any) -> Config:
    return attrs.evolve(config, **{"dashboard_enabled": True, "dashboard_port": 0, **changes})


@asynccontextmanager
async def running_hive(
    config: Config, *, lifecycle: bool | LifecycleFactory = False, **changes: Any
) -> AsyncIterator[Hive]:
    """A real hive with its dashboard on port 0; bare agents unless `lifecycle` (real child processes, or
    a factory such as `RecordingLifecycle`)."""
    async with open_hive(dashboard_config(config, **changes), lifecycle=lifecycle) as hive:
        yield hive


def url_of(hive: Hive) -> str:
    return dashboard_url(hive.config)


def token_of(hive: Hive) -> str:
    return hive.coordinator.paths.dashboard_token.read_text().strip()


@asynccontextmanager
async def raw_stream(
    hive: Hive,
    *,
    token: str | None = None,
    resume: ResumePoint | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[WebSocketConnection]:
    """A bare trio-websocket connection: sees exactly the frames the server sends."""
    assert hive.dashboard_url is not None
    url = stream_url(hive.dashboard_url, token=token, resume=resume)
    async with open_websocket_url(url, extra_headers=headers, max_message_size=64 * 1024 * 1024) as ws:
        yield ws


async def next_frame(ws: WebSocketConnection, *, within: float = 5.0) -> dict[str, Any]:
    with trio.fail_after(within):
        data: dict[str, Any] = json.loads(await ws.get_message())
    return data


@attrs.define
class RecordingLifecycle(BareLifecycle):
    """A `LifecycleOps` double: approvals resolve for real; lifecycle verbs are recorded, gated if asked.

    Serves and shuts down as the bare lifecycle does (nothing runs). Give it to the hive at assembly:
    `running_hive(config, lifecycle=RecordingLifecycle)`; `hive.coordinator.ops` is then this object.
    """

    coord: Coordinator
    calls: list[tuple[str, str]] = attrs.field(factory=list)
    gate: trio.Event | None = None
    finished: list[tuple[str, str]] = attrs.field(factory=list)

    async def _verb(self, verb: str, name: str, kind: TransientKind) -> None:
        await self.coord.require_agent(name)
        with self.coord.transient(name, kind):
            self.calls.append((verb, name))
            if self.gate is not None:
                await self.gate.wait()
        self.finished.append((verb, name))

    async def spawn(self, name: str, *, parent: str | None = None) -> AgentRecord:
        self.calls.append(("spawn", name))
        return await self.coord.record_spawn(name, parent=parent)

    async def start(self, name: str) -> None:
        await self._verb("start", name, TransientKind.STARTING)

    async def stop(self, name: str, *, graceful: bool = True) -> None:
        await self._verb("stop", name, TransientKind.STOPPING)

    async def restart(self, name: str) -> None:
        await self._verb("restart", name, TransientKind.RESTARTING)

    async def rebuild(self, name: str) -> None:
        await self._verb("rebuild", name, TransientKind.REBUILDING)

    async def destroy(self, name: str, *, purge: bool = False) -> None:
        await self._verb("destroy", name, TransientKind.DESTROYING)

    async def purge_tombstone(self, name: str) -> None:
        raise NotFound(f"no tombstone {name!r}")

    async def request_spawn(self, name: str, description: str | None, *, requested_by: str) -> Approval:
        return await self.coord.propose_approval(
            name, ApprovalKind.SPAWN, description=description, requested_by=requested_by
        )

    async def request_apply_commit(
        self, agent: str, commit_ref: str, description: str | None, *, requested_by: str
    ) -> Approval:
        raise HiveError("apply_commit needs the real lifecycle")

    async def _resolve(self, approval_id: int, status: ApprovalStatus, note: str | None) -> Approval:
        return await self.coord.resolve_approval(approval_id, status, note=note)

    async def approve(self, approval_id: int, *, note: str | None = None) -> Approval:
        return await self._resolve(approval_id, ApprovalStatus.APPROVED, note)

    async def deny(self, approval_id: int, *, note: str | None = None) -> Approval:
        return await self._resolve(approval_id, ApprovalStatus.DENIED, note)


async def add_pending_approval(coord: Coordinator, agent: str, *, diff: str | None = None) -> Approval:
    """An apply_commit approval as the lifecycle layer records one: row, fetched diff, event."""
    approval = await coord.propose_approval(
        agent, ApprovalKind.APPLY_COMMIT, commit_ref="abc1234", description=f"update {agent}", requested_by="manager"
    )
    approval = await coord.pin_proposal(
        approval.id,
        fetched_sha="abc1234def5678900000",
        diff=diff or "--- a/agent.nix\n+++ b/agent.nix\n@@ -1 +1 @@\n-old = 1;\n+new = 2;\n",
        announce=True,
    )
    return approval


@attrs.frozen
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def http_get(
    url: str, *, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> HttpReply:
    """A plain GET with the standard library's HTTP client, in a worker thread (real HTTP, no fakes)."""
    if params:
        url = f"{url}{'&' if '?' in url else '?'}{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers=headers or {})

    def fetch() -> HttpReply:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return HttpReply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
        except urllib.error.HTTPError as exc:
            return HttpReply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())

    return await trio.to_thread.run_sync(fetch)


@attrs.define
class RawHttp:
    """A real TCP connection to the dashboard, for requests no well-behaved client library would send.

    `request` speaks HTTP/1.1 through an h11 client (keep-alive included); `send` writes raw bytes and
    `read_to_close` reads whatever the server says until it closes the connection.
    """

    stream: trio.SocketStream
    conn: h11.Connection = attrs.field(factory=lambda: h11.Connection(h11.CLIENT))

    async def request(
        self, method: str, target: str, *, headers: list[tuple[str, str]] | None = None, host: str | None = None
    ) -> tuple[h11.Response, bytes]:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        sockname = self.stream.socket.getpeername()
        fields = [("Host", host or f"127.0.0.1:{sockname[1]}"), *(headers or [])]
        out = self.conn.send(h11.Request(method=method, target=target, headers=fields))
        out += self.conn.send(h11.EndOfMessage())  # type: ignore[operator]
        await self.stream.send_all(out)  # type: ignore[arg-type]
        response: h11.Response | None = None
        body = b""
        with trio.fail_after(5):
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    self.conn.receive_data(await self.stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert response is not None
                    return response, body
                else:
                    raise AssertionError(f"unexpected {event!r}")

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_to_close(self, *, within: float = 5.0) -> bytes:
        received = b""
        with trio.fail_after(within):
            while chunk := await self.stream.receive_some(65536):
                received += chunk
        return received


@asynccontextmanager
async def raw_http(hive: Hive) -> AsyncIterator[RawHttp]:
    assert hive.dashboard_url is not None
    parts = urllib.parse.urlsplit(hive.dashboard_url)
    assert parts.hostname is not None and parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream:
        yield RawHttp(stream)


def header(response: h11.Response, name: str) -> str | None:
    wanted = name.lower().encode()
    for key, value in response.headers:
        if key == wanted:
            return value.decode("latin-1")
    return None
