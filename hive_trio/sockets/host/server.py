"""Serves `host.sock`, the operator's admin socket, wire-compatible with hyperhive's v1 (SPEC §5.2).

Each connection reads request lines (parsed by `host_protocol`) and answers each in order with one
response line. A bad request gets `ok: false` and the connection stays usable; a line over the frame
limit closes that connection only. `subscribe_agent_status` turns the connection into a feed of
changed `agent_status` rows from the event hub, which never waits for a slow reader: a reader that falls
behind is re-sent the current rows instead. Lifecycle verbs go through `coordinator.ops`. It never touches
the database or builds a path itself.
"""

from __future__ import annotations

import logging
import math
import socket
from typing import Any, NoReturn, assert_never
from urllib.parse import urlencode, urlsplit

import trio

from hive_trio.core.agent_logs import read_agent_log
from hive_trio.core.coordinator import Coordinator
from hive_trio.core.event_hub import Resync
from hive_trio.dashboard.token import read_token
from hive_trio.errors import HiveError, InvalidRequest
from hive_trio.records import (
    BROADCAST,
    OPERATOR,
    SYSTEM_SENDER,
    ApprovalStatus,
    ContainerRemovedEvent,
    ContainerStateChangedEvent,
    HostAgentStatus,
    HostAnswer,
    HostApproval,
    HostApprovals,
    HostApprove,
    HostBroadcast,
    HostCancelQuestion,
    HostDashboardUrl,
    HostDeny,
    HostDestroy,
    HostInbox,
    HostKill,
    HostList,
    HostLogTail,
    HostPending,
    HostPurgeTombstone,
    HostQuestions,
    HostRebuild,
    HostReply,
    HostRequest,
    HostRequestSpawn,
    HostRestart,
    HostSend,
    HostSetPaused,
    HostSpawn,
    HostStart,
    HostStop,
    HostSubscribeAgentStatus,
    HostTombstones,
    HostUrls,
    Scope,
    TransientClearedEvent,
    TransientSetEvent,
    Urls,
    harness,
    unstructure,
)
from hive_trio.rules.framing import FrameTooLarge, LineFramer
from hive_trio.rules.paths import SOCKET_MODE
from hive_trio.sockets.host.harness_verbs import run_harness_verb
from hive_trio.sockets.host.protocol import HostProtocolError, error_response, ok_response, parse_request
from hive_trio.sockets.unix_listener import bind_unix_listener, serve_bound_listener

log = logging.getLogger(__name__)

RECEIVE_CHUNK = 65536
# Events a status subscriber may have queued before it is told to catch up from the current rows.
STATUS_FEED_BUFFER = 128
RECENT_QUESTIONS = 100
Fields = dict[str, Any]


class PartlyFailed(HiveError):
    """Some agents of a scope were done, some refused; the response says which."""

    def __init__(self, message: str, fields: Fields) -> None:
        super().__init__(message)
        self.fields = fields


class HostCommands:
    """What each host.sock verb does, as the operator. Returns the response's result fields."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    async def run(self, request: HostRequest) -> Fields:
        # One `case` per verb, so mypy checks each handler's request type and "find usages" finds it.
        match request:
            case HostList():
                return await self._list(request)
            case HostAgentStatus():
                return await self._agent_status(request)
            case HostSetPaused():
                return await self._set_paused(request)
            case HostStart():
                return await self._start(request)
            case HostStop():
                return await self._stop(request)
            case HostRestart():
                return await self._restart(request)
            case HostUrls():
                return await self._urls(request)
            case HostRequestSpawn():
                return await self._request_spawn(request)
            case HostKill():
                return await self._kill(request)
            case HostSpawn():
                return await self._spawn(request)
            case HostRebuild():
                return await self._rebuild(request)
            case HostDestroy():
                return await self._destroy(request)
            case HostPurgeTombstone():
                return await self._purge_tombstone(request)
            case HostPending():
                return await self._pending(request)
            case HostApprovals():
                return await self._approvals(request)
            case HostApprove():
                return await self._approve(request)
            case HostDeny():
                return await self._deny(request)
            case HostQuestions():
                return await self._questions(request)
            case HostAnswer():
                return await self._answer(request)
            case HostCancelQuestion():
                return await self._cancel_question(request)
            case HostSend():
                return await self._send(request)
            case HostBroadcast():
                return await self._broadcast(request)
            case HostTombstones():
                return await self._tombstones(request)
            case (
                harness.HostTranscript()
                | harness.HostPermissions()
                | harness.HostAllowPermission()
                | harness.HostDenyPermission()
                | harness.HostInterrupt()
                | harness.HostSetBudget()
                | harness.HostReminders()
            ):
                return await run_harness_verb(self.coordinator, request)  # issue 10's verbs (harness_verbs.py)
            case HostInbox():
                return await self._inbox(request)
            case HostReply():
                return await self._reply(request)
            case HostDashboardUrl():
                return await self._dashboard_url(request)
            case HostLogTail():
                return await self._log_tail(request)
            case HostSubscribeAgentStatus():
                # The connection turns into a feed for this one (`HostConnection.answer`).
                raise InvalidRequest(f"{type(request).tag_value} is not served on this connection")
            case _:
                assert_never(request)

    # ------------------------------------------------------------------ hyperhive's verbs
    async def _list(self, _: HostList) -> Fields:
        return {"agents": await self.coordinator.agent_names()}

    async def _agent_status(self, _: HostAgentStatus) -> Fields:
        fields: Fields = {"agent_statuses": unstructure(await self.coordinator.agent_statuses())}
        if self.coordinator.federation is not None:
            # New optional keys (host.sock v1 clients ignore what they do not know): docs/FEDERATION.md.
            fields["remote_agents"] = unstructure(await self.coordinator.remote_agents())
            fields["link"] = unstructure(await self.coordinator.link_state())
        return fields

    async def _set_paused(self, request: HostSetPaused) -> Fields:
        record = await self.coordinator.set_paused(request.name, request.paused)
        return {"name": record.name, "paused": record.paused}

    async def _scope_names(self, scope: Scope) -> list[str]:
        names = list(dict.fromkeys(scope.agent_names))
        if scope.agents:
            names += [n for n in await self.coordinator.agent_names() if n not in names]
        elif not names:
            # hyperhive reads an empty scope as "everything"; one missing field should not stop the hive.
            raise InvalidRequest('scope names no agents: list "agent_names", or set "agents": true for every agent')
        return names

    async def _each(self, verb: str, names: list[str], action: Any) -> Fields:
        """Run `action(name)` for every name at once; report which were done and why others were not."""
        done: list[str] = []
        failed: dict[str, str] = {}

        async def one(name: str) -> None:
            try:
                await action(name)
            except HiveError as exc:
                failed[name] = str(exc)
            else:
                done.append(name)

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(one, name)
        fields: Fields = {"agents": sorted(done)}
        if failed:
            reasons = "; ".join(f"{n}: {why}" for n, why in sorted(failed.items()))
            raise PartlyFailed(f"{verb} failed for {len(failed)} of {len(names)}: {reasons}", fields)
        return fields

    async def _start(self, request: HostStart) -> Fields:
        names = await self._scope_names(request.scope)  # a scope naming nothing is wrong with any backend
        return await self._each("start", names, self.coordinator.ops.start)

    async def _stop(self, request: HostStop) -> Fields:
        names = await self._scope_names(request.scope)
        ops = self.coordinator.ops

        async def stop(name: str) -> None:
            await ops.stop(name, graceful=request.graceful)

        return await self._each("stop", names, stop)

    async def _restart(self, request: HostRestart) -> Fields:
        await self.coordinator.ops.restart(request.name)
        return {"name": request.name}

    async def _urls(self, _: HostUrls) -> Fields:
        home = self.coordinator.dashboard_url
        domain = urlsplit(home).hostname if home else None
        return {"urls": unstructure(Urls(domain=domain or socket.gethostname(), home=home))}

    async def _request_spawn(self, request: HostRequestSpawn) -> Fields:
        approval = await self.coordinator.ops.request_spawn(request.name, request.description, requested_by=OPERATOR)
        return {"approval": unstructure(HostApproval.of(approval))}

    async def _kill(self, request: HostKill) -> Fields:
        # hyperhive's `kill` stops the container the ordinary way; it is not a SIGKILL.
        await self.coordinator.ops.stop(request.name, graceful=True)
        return {"name": request.name}

    # ------------------------------------------------------------------ ours
    async def _spawn(self, request: HostSpawn) -> Fields:
        record = await self.coordinator.ops.spawn(request.name)
        return {"agent": unstructure(record)}

    async def _rebuild(self, request: HostRebuild) -> Fields:
        await self.coordinator.ops.rebuild(request.name)
        return {"name": request.name}

    async def _destroy(self, request: HostDestroy) -> Fields:
        await self.coordinator.ops.destroy(request.name, purge=request.purge)
        return {"name": request.name, "purged": request.purge}

    async def _purge_tombstone(self, request: HostPurgeTombstone) -> Fields:
        await self.coordinator.ops.purge_tombstone(request.name)
        return {"name": request.name}

    async def _pending(self, request: HostPending) -> Fields:
        return await self._approval_rows(request.status)

    async def _approvals(self, request: HostApprovals) -> Fields:
        return await self._approval_rows(request.status)

    async def _approval_rows(self, status: ApprovalStatus | None) -> Fields:
        approvals = await self.coordinator.list_approvals(status=status)
        return {"approvals": unstructure([HostApproval.of(a) for a in approvals])}

    async def _approve(self, request: HostApprove) -> Fields:
        approval = await self.coordinator.ops.approve(request.id, note=request.note)
        return {"approval": unstructure(HostApproval.of(approval))}

    async def _deny(self, request: HostDeny) -> Fields:
        approval = await self.coordinator.ops.deny(request.id, note=request.note)
        return {"approval": unstructure(HostApproval.of(approval))}

    async def _questions(self, request: HostQuestions) -> Fields:
        found = await self.coordinator.list_questions(recent=RECENT_QUESTIONS if request.all else None)
        return {"questions": unstructure(found)}

    async def _answer(self, request: HostAnswer) -> Fields:
        question = await self.coordinator.answer_question(request.id, request.answer, answerer=OPERATOR)
        return {"question": unstructure(question)}

    async def _cancel_question(self, request: HostCancelQuestion) -> Fields:
        return {"question": unstructure(await self.coordinator.cancel_question(request.id, by=OPERATOR))}

    async def _send(self, request: HostSend) -> Fields:
        ids = [m.id for m in await self.coordinator.send(OPERATOR, request.to, request.body)]
        return {"id": ids[0] if ids else None, "ids": ids}

    async def _broadcast(self, request: HostBroadcast) -> Fields:
        return {"ids": [m.id for m in await self.coordinator.send(OPERATOR, BROADCAST, request.body)]}

    async def _tombstones(self, _: HostTombstones) -> Fields:
        return {"agents": await self.coordinator.tombstones()}

    # ------------------------------------------------------------------ beyond hyperhive (issue 11)
    async def _inbox(self, request: HostInbox) -> Fields:
        return {"messages": unstructure(await self.coordinator.recent_messages(OPERATOR, limit=request.limit))}

    async def _reply(self, request: HostReply) -> Fields:
        original = await self.coordinator.message(request.id)
        if original is None or original.recipient != OPERATOR:
            raise InvalidRequest(f"no message #{request.id} to the operator")
        if original.sender == SYSTEM_SENDER:
            raise InvalidRequest(f"message #{request.id} is a system notice; there is nobody to reply to")
        ids = [m.id for m in await self.coordinator.send(OPERATOR, original.sender, request.body)]
        return {"id": ids[0] if ids else None, "ids": ids, "to": original.sender}

    async def _dashboard_url(self, _: HostDashboardUrl) -> Fields:
        home = self.coordinator.dashboard_url
        if home is None:
            raise InvalidRequest("this daemon serves no dashboard (dashboard_enabled = false)")
        token = await trio.to_thread.run_sync(read_token, self.coordinator.paths.dashboard_token)
        return {"url": f"{home}?{urlencode({'token': token})}"}

    async def _log_tail(self, request: HostLogTail) -> Fields:
        chunk = await read_agent_log(self.coordinator, request.name, offset=request.offset, max_bytes=request.max_bytes)
        return {"name": request.name, "text": chunk.text, "offset": chunk.offset, "rotated": chunk.rotated}


class HostConnection:
    """One client of host.sock: requests answered in order; an optional status feed beside them."""

    def __init__(
        self, coordinator: Coordinator, stream: trio.abc.Stream, *, max_frame: int, idle_timeout: float = math.inf
    ) -> None:
        self.coordinator = coordinator
        self.commands = HostCommands(coordinator)
        self.stream = stream
        self.max_frame = max_frame
        # A client that sends nothing for this long is closed, unless it follows the status feed (which
        # is a client that listens, not an idle one). hyperhive's clients connect per request.
        self.idle_timeout = idle_timeout
        # The request loop and the status feed both write; whole lines must never interleave.
        self._write_lock = trio.StrictFIFOLock()
        self._feed_done: trio.Event | None = None

    async def send(self, line: bytes) -> None:
        async with self._write_lock:
            await self.stream.send_all(line)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            try:
                await self._serve_requests(nursery)
                if self._feed_done is not None:
                    # A subscriber may half-close once it has asked; the feed runs until a write fails.
                    await self._feed_done.wait()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client left (maybe mid-reply); nothing is lost, nothing to report
            nursery.cancel_scope.cancel()

    async def _serve_requests(self, nursery: trio.Nursery) -> None:
        framer = LineFramer(max_frame=self.max_frame)
        while True:
            timeout = math.inf if self._feed_done is not None else self.idle_timeout
            with trio.move_on_after(timeout) as idle:
                data = await self.stream.receive_some(RECEIVE_CHUNK)
            if idle.cancelled_caught:
                await self.send(error_response(f"closing an idle connection: nothing was asked for {timeout:g} s"))
                return
            if not data:
                return
            try:
                lines = framer.feed(data)
            except FrameTooLarge as exc:
                await self.send(error_response(str(exc)))
                self._feed_done = None
                return
            for line in lines:
                if line.strip():
                    response = await self.answer(line, nursery)
                    if response is not None:
                        await self.send(response)

    async def answer(self, line: bytes, nursery: trio.Nursery) -> bytes | None:
        """The response line for one request (None when the status feed already acked it)."""
        try:
            request = parse_request(line)
        except HostProtocolError as exc:
            return error_response(str(exc))
        if isinstance(request, HostSubscribeAgentStatus):
            if self._feed_done is None:
                self._feed_done = trio.Event()
                await nursery.start(self._status_feed, self._feed_done)
                return None
            return ok_response()
        try:
            return ok_response(**await self.commands.run(request))
        except PartlyFailed as exc:
            return error_response(str(exc), **exc.fields)
        except HiveError as exc:
            return error_response(str(exc))
        except Exception:
            log.exception("host.sock %s failed", type(request).tag_value)
            return error_response(f"internal error in the hive daemon while running {type(request).tag_value}")

    async def _status_feed(self, done: trio.Event, *, task_status: trio.TaskStatus[None]) -> None:
        """Ack, then one response per changed agent, for as long as the client reads them."""
        coordinator = self.coordinator
        try:
            acked = False
            while True:
                with coordinator.subscribe(buffer=STATUS_FEED_BUFFER) as sub:
                    if not acked:
                        # Subscribed before the ack, so nothing after the ack is missed; written by this
                        # task, so no row can overtake it.
                        task_status.started()
                        acked = True
                        await self.send(ok_response())
                    else:
                        # The reader fell behind and the hub dropped it: catch up from the current rows.
                        for row in await self.coordinator.agent_statuses():
                            await self.send(ok_response(agent_statuses=[unstructure(row)]))
                    async for item in sub:
                        if isinstance(item, Resync):
                            break
                        await self._forward(item)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            done.set()

    async def _forward(self, item: object) -> None:
        if isinstance(item, ContainerStateChangedEvent):
            await self.send(ok_response(agent_statuses=[unstructure(item.row)]))
        elif isinstance(item, ContainerRemovedEvent):
            # Not in hyperhive's wire; an optional field, so its clients ignore it (SPEC §5.2).
            await self.send(ok_response(agent_statuses=[], removed=item.name))
        elif isinstance(item, TransientSetEvent | TransientClearedEvent):
            # The row's `transient` changed; hyperhive's clients see spinners through this feed.
            for row in await self.coordinator.agent_statuses([item.name]):
                await self.send(ok_response(agent_statuses=[unstructure(row)]))


async def serve_host_socket(
    coordinator: Coordinator, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    """Bind `host.sock` (0660, group `admin_group` where it exists) and serve it until cancelled."""
    config = coordinator.config
    bound = await bind_unix_listener(coordinator.paths.host_socket, mode=SOCKET_MODE, group=config.admin_group)

    async def handle(stream: trio.SocketStream) -> None:
        connection = HostConnection(
            coordinator, stream, max_frame=config.max_frame_bytes, idle_timeout=config.host_idle_timeout
        )
        await connection.run()

    cap = config.max_connections_per_socket
    refusal = error_response(f"host.sock is at its cap of {cap} connections; close one and try again")
    await serve_bound_listener(
        bound, handle, what="host.sock", max_connections=cap, refusal=refusal, task_status=task_status
    )


__all__ = ["HostCommands", "HostConnection", "serve_host_socket"]
