"""What harnesses report, and the operator's answers to them: the coordinator's section for issue 10.

An agent's harness reports on a channel that only it holds (docs/DECISIONS.md, "The harness channel"):
its turns go into the durable transcript and out as dashboard events, its usage into per-day totals
checked against the agent's budget, its login trouble into `needs_login` with a HelperEvent to the
manager. It asks the operator for permission to use a tool and waits for the answer, and it long-polls
`wait_control` for an interrupt, a pause or a budget change. Agents schedule reminders to themselves.

This is part of the coordinator (it owns no store and no socket of its own): every durable change is
one transaction on the coordinator's database, announced on its hub only after it committed, with the
manager's notices in that same transaction. It never parses a wire or serves a socket; the harness
tools (`sockets/mcp/harness_tools.py`), host.sock and the dashboard call it.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, NoReturn

import apsw
import attrs
import trio

from hive_trio.errors import HiveError, InvalidRequest
from hive_trio.records import (
    MANAGER_AGENT,
    OPERATOR,
    SYSTEM_SENDER,
    HelperEvent,
    Message,
    to_json,
)
from hive_trio.records.carry import carried
from hive_trio.records.harness import (
    WITHDRAWN_DECIDER,
    AgentUsage,
    Budget,
    HelperBudgetExceeded,
    HelperLoggedIn,
    HelperNeedsLogin,
    HelperTurnFailed,
    PermissionAddedEvent,
    PermissionDecision,
    PermissionRequest,
    PermissionResolvedEvent,
    Reminder,
    TranscriptEntry,
    TranscriptKind,
    TurnEventArgs,
    TurnEventEvent,
    TurnFinishedArgs,
    TurnFinishedEvent,
    TurnOutcome,
    TurnStartedArgs,
    TurnStartedEvent,
)
from hive_trio.rules.names import validate_agent_name
from hive_trio.store import broker as broker_sql
from hive_trio.store import permissions as permissions_sql
from hive_trio.store import reminders as reminders_sql
from hive_trio.store import roster as roster_sql
from hive_trio.store import transcripts as transcripts_sql
from hive_trio.store import usage as usage_sql

if TYPE_CHECKING:
    from hive_trio.core.coordinator import Coordinator
    from hive_trio.core.event_hub import EventHub
    from hive_trio.store.database import Database

log = logging.getLogger(__name__)

# What a dashboard event carries of a stream event's text: the ring holds thousands of events, so a
# frame stays small; the transcript (host.sock `transcript`) keeps the longer, capped text.
DASHBOARD_TEXT_MAX: Final = 2048
# A permission request's input as a dashboard event carries (the ring holds thousands of events); the row,
# the snapshot and host.sock `permissions` keep it up to the body limit.
DASHBOARD_INPUT_MAX: Final = 8192
# Open permission requests one agent may have at once (a harness asks one at a time per tool use); below the
# 32 requests a connection may have in flight, so the refusal can reach the harness.
MAX_OPEN_PERMISSIONS: Final = 16
MAX_TURN_ID: Final = 128
MAX_TOOL_NAME: Final = 256
MAX_MESSAGE_IDS: Final = 64
MAX_WAIT_CONTROL: Final = 180.0
MAX_TRANSCRIPT_LIMIT: Final = 1000
RECENT_PERMISSIONS: Final = 100
# Reminders further out than this are refused: almost certainly a unit mistake (ms for s).
MAX_REMIND_DELAY: Final = 366 * 86400.0
WORKING: Final = "working"
IDLE: Final = "idle"

ServeHarness = Callable[["Coordinator", str, trio.SocketStream], Awaitable[None]]


@attrs.define(eq=False)
class AgentControl:
    """In-memory control state of one agent's harness: what `wait_control` reports and waits on."""

    bell: trio.Event = attrs.field(factory=trio.Event)
    interrupt: bool = False
    turn_id: str | None = None
    channels: int = 0
    last_failure_notice: float | None = None
    failures_unreported: int = 0

    def ring(self) -> None:
        self.bell.set()
        self.bell = trio.Event()


def _check_turn_id(turn_id: str) -> str:
    if not turn_id or len(turn_id) > MAX_TURN_ID:
        raise InvalidRequest(f"turn_id must be 1-{MAX_TURN_ID} characters")
    return turn_id


def _check_tool(tool: str | None) -> str | None:
    if tool is not None and (not tool or len(tool) > MAX_TOOL_NAME):
        raise InvalidRequest(f"tool must be 1-{MAX_TOOL_NAME} characters")
    return tool


def _non_negative(**counts: int) -> int:
    for key, value in counts.items():
        if value < 0:
            raise InvalidRequest(f"{key} must not be negative")
    return sum(counts.values())


def _has_data(sock: socket.socket) -> bool:
    """After `wait_readable`: True if the peer sent bytes, False if it closed (or the socket failed)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True  # a spurious wake-up: let the session's reader wait for the bytes
    except OSError:
        return False


def parse_moment(at: float | str) -> float:
    """Unix seconds from a number or an RFC 3339 string (a time without a zone is refused, not guessed)."""
    if isinstance(at, float | int):
        return float(at)
    try:
        parsed = datetime.fromisoformat(at)
    except ValueError:
        raise InvalidRequest(f"at: {at[:40]!r} is not an RFC 3339 time such as 2026-12-01T09:00:00Z") from None
    if parsed.tzinfo is None:
        raise InvalidRequest("at: give the time zone (a trailing Z for UTC)")
    return parsed.timestamp()


class HarnessReports:
    """The coordinator's harness-facing section; `coord.reports`."""

    def __init__(
        self,
        coord: Coordinator,
        *,
        db: Database,
        hub: EventHub,
        deliverable: Callable[[Sequence[Message]], None],
    ) -> None:
        self.coord = coord
        self.config = coord.config
        # The coordinator's own database and hub: this section writes and announces for it.
        self.db = db
        self.hub = hub
        # Mirrors committed messages to the dashboard and wakes their recipients' parked `recv`.
        self._deliverable = deliverable
        self.serve_channel: ServeHarness | None = None
        self._controls: dict[str, AgentControl] = {}
        self._waiters: dict[int, trio.Event] = {}
        # Rung to wake a watchdog early: "permission" on a new request, "reminder" on a new reminder.
        self._bells: dict[str, trio.Event] = {"permission": trio.Event(), "reminder": trio.Event()}

    def control(self, name: str) -> AgentControl:
        ctl = self._controls.get(name)
        if ctl is None:
            ctl = self._controls[name] = AgentControl()
        return ctl

    def control_changed(self, name: str) -> None:
        """Pause or budget changed: a parked `wait_control` wakes and reports it."""
        ctl = self._controls.get(name)
        if ctl is not None:
            ctl.ring()

    def forget(self, name: str) -> None:
        self._controls.pop(name, None)

    # ================================================================== the channel
    async def serve_run_channel(self, name: str, sock: socket.socket, ended: trio.CancelScope) -> None:
        """Serve the daemon's end of one run's socketpair as `name`'s harness session, until the run ends.

        The session is bound to `name` by construction: this end exists only in this task, and its peer
        only in the process that was launched for `name`. `ended` is cancelled by whoever watches the run
        (the lifecycle, when it exits); the task enters it, so the session ends with the run.

        Lazy: until the harness sends its first byte the channel is one parked `wait_readable` and the
        socket, not an MCP session (a plain `sleep` agent never speaks on it, and a session's server,
        reader, writer, nursery and lifespan were most of a silent run's memory; docs/PERFORMANCE.md). A
        peer that closes first is never served. The channel counts as connected (`harness_connected`,
        host.sock `interrupt`) from the launch, as before: the run holds its end whether or not it spoke.
        """
        ctl = self.control(name)
        ctl.channels += 1
        try:
            with ended:
                if self.serve_channel is None:
                    log.warning("no harness channel server is wired; %s's harness gets none", name)
                    await trio.sleep_forever()
                await trio.lowlevel.wait_readable(sock)
                if not _has_data(sock):
                    return  # the harness closed its end (or never had one) without a word
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
                try:
                    await self.serve_channel(self.coord, name, stream)
                except Exception:
                    # A bad harness closes its own channel only, never the supervisor.
                    log.exception("the harness channel of %s failed", name)
                finally:
                    await trio.aclose_forcefully(stream)
        finally:
            ctl.channels -= 1
            if ctl.turn_id is not None:
                ctl.turn_id = None
            if sock.fileno() >= 0:  # never served: nothing of trio's holds it
                trio.lowlevel.notify_closing(sock)
                sock.close()

    def harness_connected(self, name: str) -> bool:
        ctl = self._controls.get(name)
        return ctl is not None and ctl.channels > 0

    # ================================================================== turns
    def _announce(self, notices: Sequence[Message | None]) -> None:
        self._deliverable([n for n in notices if n is not None])

    async def turn_started(self, name: str, args: TurnStartedArgs) -> TranscriptEntry:
        turn_id = _check_turn_id(args.turn_id)
        if len(args.message_ids) > MAX_MESSAGE_IDS:
            raise InvalidRequest(f"message_ids: at most {MAX_MESSAGE_IDS}")
        now = self.coord.clock()
        is_agent = name != MANAGER_AGENT

        def tx(conn: apsw.Connection) -> TranscriptEntry:
            entry = transcripts_sql.append_tx(
                conn,
                agent=name,
                turn_id=turn_id,
                kind=TranscriptKind.TURN_STARTED,
                now=now,
                max_rows=self.config.transcript_max_rows,
                message_ids=args.message_ids,
            )
            if is_agent and roster_sql.get(conn, name) is not None:
                roster_sql.update_tx(conn, name=name, status_text=WORKING, status_set_at=now)
            return entry

        entry = await self.db.write(tx)
        ctl = self.control(name)
        ctl.turn_id = turn_id
        # An interrupt asked for between turns is stale: it must not stop the turn that starts now.
        ctl.interrupt = False
        self.hub.emit(TurnStartedEvent(agent=name, turn_id=turn_id, message_ids=list(args.message_ids), at=now))
        if is_agent:
            await self.coord.publish_status(name)
        return entry

    async def turn_event(self, name: str, args: TurnEventArgs) -> TranscriptEntry:
        turn_id = _check_turn_id(args.turn_id)
        tool = _check_tool(args.tool)
        cap = self.config.transcript_max_text
        text = transcripts_sql.cap_text(args.text, cap)
        input_json = transcripts_sql.cap_json(args.input, cap)
        now = self.coord.clock()
        entry = await self.db.write(
            lambda c: transcripts_sql.append_tx(
                c,
                agent=name,
                turn_id=turn_id,
                kind=TranscriptKind(args.kind.value),
                now=now,
                max_rows=self.config.transcript_max_rows,
                text=text,
                tool=tool,
                input_json=input_json,
                is_error=args.is_error,
            )
        )
        self.hub.emit(
            TurnEventEvent(
                agent=name,
                turn_id=turn_id,
                event_kind=args.kind,
                text=transcripts_sql.cap_text(text, DASHBOARD_TEXT_MAX),
                tool=tool,
                at=now,
                is_error=args.is_error,
            )
        )
        return entry

    async def turn_finished(self, name: str, args: TurnFinishedArgs) -> bool:
        """Record the end of a turn; True when the agent's daily budget is now used up."""
        turn_id = _check_turn_id(args.turn_id)
        tokens = _non_negative(
            input_tokens=args.input_tokens,
            output_tokens=args.output_tokens,
            cache_read_tokens=args.cache_read_tokens,
            cache_write_tokens=args.cache_write_tokens,
        )
        if args.cost_usd is not None and args.cost_usd < 0:
            raise InvalidRequest("cost_usd must not be negative")
        model = None if args.model is None else args.model[:MAX_TOOL_NAME] or None
        error = transcripts_sql.cap_text(args.error, self.config.transcript_max_text)
        now = self.coord.clock()
        ctl = self.control(name)
        failure_note = self._failure_note(ctl, name, args.outcome, error, now)
        is_agent = name != MANAGER_AGENT

        def tx(conn: apsw.Connection) -> tuple[TranscriptEntry, list[Message | None], bool, bool]:
            entry = transcripts_sql.append_tx(
                conn,
                agent=name,
                turn_id=turn_id,
                kind=TranscriptKind.TURN_FINISHED,
                now=now,
                max_rows=self.config.transcript_max_rows,
                text=error,
                outcome=args.outcome,
                model=model,
                tokens=tokens,
                cost_usd=args.cost_usd,
            )
            usage_sql.record_turn_tx(conn, agent=name, now=now, tokens=tokens, cost_usd=args.cost_usd or 0.0)
            notices: list[Message | None] = []
            row_changed = False
            record = roster_sql.get(conn, name) if is_agent else None
            if record is not None:
                changes: dict[str, Any] = {}
                if model is not None and model != record.active_model:
                    changes["active_model"] = model
                if args.outcome is TurnOutcome.AUTH_FAILED and not record.needs_login:
                    changes["needs_login"] = True
                    notices.append(self._notice_tx(conn, HelperNeedsLogin(agent=name), now))
                elif args.outcome is TurnOutcome.OK and record.needs_login:
                    changes["needs_login"] = False
                    notices.append(self._notice_tx(conn, HelperLoggedIn(agent=name), now))
                if record.status_text == WORKING:
                    changes.update(status_text=IDLE, status_set_at=now)
                if changes:
                    roster_sql.update_tx(conn, name=name, **changes)
                    row_changed = True
            if failure_note is not None:
                notices.append(self._notice_tx(conn, HelperTurnFailed(agent=name, note=failure_note), now))
            usage = self._usage_tx(conn, [name], now)[name]
            exceeded = usage.budget_exceeded
            if exceeded and usage_sql.claim_budget_notice_tx(conn, agent=name, now=now):
                notices.append(self._notice_tx(conn, HelperBudgetExceeded(agent=name), now))
                row_changed = True
            return entry, notices, exceeded, row_changed

        _entry, notices, exceeded, _ = await self.db.write(tx)
        if ctl.turn_id == turn_id:
            ctl.turn_id = None
        self.hub.emit(
            TurnFinishedEvent(
                agent=name,
                turn_id=turn_id,
                outcome=args.outcome,
                error=transcripts_sql.cap_text(error, DASHBOARD_TEXT_MAX),
                model=model,
                input_tokens=args.input_tokens,
                output_tokens=args.output_tokens,
                cache_read_tokens=args.cache_read_tokens,
                cache_write_tokens=args.cache_write_tokens,
                cost_usd=args.cost_usd,
                at=now,
                budget_exceeded=exceeded,
            )
        )
        self._announce(notices)
        if exceeded:
            ctl.ring()
        if is_agent:
            # Usage is in the row, so every finished turn changes it.
            await self.coord.publish_status(name)
        return exceeded

    def _failure_note(
        self, ctl: AgentControl, name: str, outcome: TurnOutcome, error: str | None, now: float
    ) -> str | None:
        """The `turn_failed` note to send now, or None: at most one per interval, so a loop of failures
        cannot flood the manager; the next note counts the ones held back."""
        if outcome not in (TurnOutcome.FAILED, TurnOutcome.TIMEOUT):
            return None
        interval = self.config.turn_failed_notice_interval
        if ctl.last_failure_notice is not None and now - ctl.last_failure_notice < interval:
            ctl.failures_unreported += 1
            return None
        held, ctl.failures_unreported = ctl.failures_unreported, 0
        ctl.last_failure_notice = now
        reason = transcripts_sql.cap_text(error, 500) or "no reason given"
        note = f"{name}'s turn {outcome.value}: {reason}"
        if held:
            note += f" ({held} more failed turn(s) since the last notice were not reported)"
        return note

    @staticmethod
    def _notice_tx(conn: apsw.Connection, event: HelperEvent, now: float) -> Message | None:
        return broker_sql.notice_tx(
            conn, sender=SYSTEM_SENDER, recipient=MANAGER_AGENT, body=to_json(event, HelperEvent), now=now
        )

    async def report_state(self, name: str, *, active_model: str | None, status_text: str | None) -> None:
        if name == MANAGER_AGENT:
            return  # the manager has no status row
        changes: dict[str, Any] = {}
        if active_model is not None:
            changes["active_model"] = active_model[:MAX_TOOL_NAME] or None
        if status_text is not None:
            text = transcripts_sql.cap_text(status_text, 500) or None
            changes.update(status_text=text, status_set_at=self.coord.clock() if text else None)
        if not changes:
            return
        await self.db.write(lambda c: roster_sql.update_tx(c, name=name, **changes))
        await self.coord.publish_status(name)

    # ================================================================== usage and budgets
    def _usage_tx(self, conn: apsw.Connection, names: Sequence[str] | None, now: float) -> dict[str, AgentUsage]:
        return usage_sql.usage_tx(
            conn,
            names,
            now=now,
            default_tokens=self.config.daily_token_budget,
            default_usd=self.config.daily_usd_budget,
        )

    def status_extras_tx(
        self, conn: apsw.Connection, names: Sequence[str] | None, now: float
    ) -> tuple[dict[str, AgentUsage], dict[str, int]]:
        """For `agent_status`, inside the coordinator's read (a worker thread: `now` is read before it)."""
        return self._usage_tx(conn, names, now), reminders_sql.pending_counts(conn, names)

    async def usage(self, name: str) -> AgentUsage:
        now = self.coord.clock()
        return (await self.db.read(lambda c: self._usage_tx(c, [name], now)))[name]

    async def set_budget(self, name: str, *, daily_tokens: int | None, daily_usd: float | None) -> Budget:
        await self.coord.require_agent(name)
        if daily_tokens is not None and daily_tokens < 0:
            raise InvalidRequest("daily_tokens must not be negative")
        if daily_usd is not None and (daily_usd < 0 or not math.isfinite(daily_usd)):
            raise InvalidRequest("daily_usd must be a finite number, not negative")
        budget = await self.db.write(
            lambda c: usage_sql.set_budget_tx(c, agent=name, daily_tokens=daily_tokens, daily_usd=daily_usd)
        )
        self.control_changed(name)  # raising the limit resumes a parked harness
        await self.coord.publish_status(name)
        return budget

    # ================================================================== control
    async def interrupt(self, name: str) -> dict[str, Any]:
        """The operator stops `name`'s running turn: its harness's `wait_control` returns `interrupt`."""
        if name != MANAGER_AGENT:
            await self.coord.require_agent(name)
        ctl = self.control(name)
        ctl.interrupt = True
        ctl.ring()
        return {"name": name, "harness_connected": ctl.channels > 0, "turn_id": ctl.turn_id}

    async def wait_control(self, name: str, wait_seconds: float) -> dict[str, bool]:
        """Return at once with a pending interrupt; else wait up to `wait_seconds` for one, or for a pause
        or budget change, then report the state. An interrupt is consumed once it is returned."""
        if not 0 <= wait_seconds <= MAX_WAIT_CONTROL:
            raise InvalidRequest(f"wait_seconds must be between 0 and {MAX_WAIT_CONTROL:g}")
        ctl = self.control(name)
        if not ctl.interrupt and wait_seconds > 0:
            with trio.move_on_after(wait_seconds):
                await ctl.bell.wait()
        interrupt, ctl.interrupt = ctl.interrupt, False
        exceeded = (await self.usage(name)).budget_exceeded
        return {"interrupt": interrupt, "paused": self.coord.is_paused(name), "budget_exceeded": exceeded}

    # ================================================================== permissions
    async def request_permission(
        self, name: str, *, tool: str, tool_input: Any, ttl_seconds: float | None
    ) -> PermissionRequest:
        """Ask the operator; wait for the decision or the deadline (then deny). A rule answers at once."""
        checked = _check_tool(tool)
        assert checked is not None
        ttl = self.config.permission_ttl if ttl_seconds is None else ttl_seconds
        if not 0 < ttl <= 86400:
            raise InvalidRequest("ttl_seconds must be positive and at most a day")
        input_json = transcripts_sql.cap_json(tool_input, self.config.max_body_bytes) or "null"
        now = self.coord.clock()

        def tx(conn: apsw.Connection) -> PermissionRequest:
            if permissions_sql.open_count(conn, agent=name) >= MAX_OPEN_PERMISSIONS:
                raise InvalidRequest(f"{name} already has {MAX_OPEN_PERMISSIONS} permission requests waiting")
            return permissions_sql.request_tx(
                conn, agent=name, tool=checked, input_json=input_json, now=now, ttl_seconds=ttl
            )

        request = await self.db.write(tx)
        if not request.is_open:
            return request
        waiter = self._waiters[request.id] = trio.Event()
        try:
            self.hub.emit(
                carried(
                    PermissionAddedEvent,
                    request,
                    input_json=transcripts_sql.cap_text(input_json, DASHBOARD_INPUT_MAX) or "null",
                )
            )
            self._bells["permission"].set()
            await waiter.wait()
        except trio.Cancelled:
            # The harness left (its run ended, or it gave up): nobody will act on an answer now.
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    await self.decide_permission(
                        request.id, PermissionDecision.DENY, by=WITHDRAWN_DECIDER, reason="the harness stopped waiting"
                    )
                except HiveError:
                    pass
            raise
        finally:
            self._waiters.pop(request.id, None)
        return await self.db.read(lambda c: permissions_sql.require(c, request.id))

    async def decide_permission(
        self,
        request_id: int,
        decision: PermissionDecision,
        *,
        by: str = OPERATOR,
        always: bool = False,
        reason: str | None = None,
    ) -> PermissionRequest:
        """Decide an open request (compare-and-set): `NotFound` for an unknown id, `Conflict` if decided."""
        if always and decision is not PermissionDecision.ALLOW:
            raise InvalidRequest("only an allow can be 'always'")
        now = self.coord.clock()
        if reason is None and by == OPERATOR:
            reason = f"{decision.value}ed by the operator" + (" (always, for this tool and agent)" if always else "")
        decided = await self.db.write(
            lambda c: permissions_sql.decide_tx(
                c, request_id=request_id, decision=decision, decided_by=by, now=now, always=always, reason=reason
            )
        )
        self._decided(decided)
        return decided

    def _decided(self, p: PermissionRequest) -> None:
        assert p.decision is not None and p.decided_by is not None
        self.hub.emit(carried(PermissionResolvedEvent, p, decided_at=p.decided_at or self.coord.clock()))
        waiter = self._waiters.get(p.id)
        if waiter is not None:
            waiter.set()

    async def snapshot_permissions(self) -> list[PermissionRequest]:
        """The open requests as the dashboard's snapshot carries them: inputs cut as in `permission_added`."""
        return [
            attrs.evolve(p, input_json=transcripts_sql.cap_text(p.input_json, DASHBOARD_INPUT_MAX) or "null")
            for p in await self.list_permissions()
        ]

    async def list_permissions(self, *, include_decided: bool = False) -> list[PermissionRequest]:
        if include_decided:
            return await self.db.read(lambda c: permissions_sql.list_recent_tx(c, limit=RECENT_PERMISSIONS))
        return await self.db.read(permissions_sql.list_open_tx)

    async def expire_permissions(self) -> list[PermissionRequest]:
        now = self.coord.clock()
        expired = await self.db.write(lambda c: permissions_sql.expire_tx(c, now=now))
        for p in expired:
            self._decided(p)
        return expired

    async def serve_permission_watchdog(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Deny requests at their deadlines; deadlines that passed while the daemon was down go first."""
        await self._serve_deadlines("permission", self.expire_permissions, permissions_sql.next_deadline, task_status)

    # ================================================================== transcripts
    async def transcript(self, name: str, *, limit: int, since: int | None = None) -> list[TranscriptEntry]:
        if name != MANAGER_AGENT:
            validate_agent_name(name)
        if not 1 <= limit <= MAX_TRANSCRIPT_LIMIT:
            raise InvalidRequest(f"limit must be between 1 and {MAX_TRANSCRIPT_LIMIT}")
        return await self.db.read(lambda c: transcripts_sql.list_tx(c, agent=name, limit=limit, since=since))

    async def vacuum(self) -> int:
        older = self.coord.clock() - self.config.transcript_retention_days * 86400
        return await self.db.write(lambda c: transcripts_sql.vacuum_tx(c, older_than=older))

    # ================================================================== reminders
    async def remind(self, name: str, body: str, *, delay_seconds: float | None, at: float | str | None) -> Reminder:
        if (delay_seconds is None) == (at is None):
            raise InvalidRequest("remind: give exactly one of delay_seconds and at")
        now = self.coord.clock()
        if delay_seconds is not None:
            if not 0 <= delay_seconds <= MAX_REMIND_DELAY:
                raise InvalidRequest("remind: delay_seconds must be between 0 and 366 days")
            due = now + delay_seconds
        else:
            assert at is not None
            due = parse_moment(at)
            if due - now > MAX_REMIND_DELAY:
                raise InvalidRequest("remind: at is more than 366 days away")
            due = max(due, now)  # a time already past is due at once
        reminder = await self.db.write(
            lambda c: reminders_sql.add_tx(
                c,
                agent=name,
                body=body,
                due_at=due,
                now=now,
                max_pending=self.config.max_pending_reminders,
                max_body_bytes=self.config.max_body_bytes,
            )
        )
        self._bells["reminder"].set()
        if name != MANAGER_AGENT:
            await self.coord.publish_status(name)
        return reminder

    async def pending_reminders(self, name: str) -> list[Reminder]:
        if name != MANAGER_AGENT:
            validate_agent_name(name)
        return await self.db.read(lambda c: reminders_sql.pending_tx(c, agent=name))

    @staticmethod
    def _render_reminder(reminder: Reminder) -> str:
        from hive_trio.records import rfc3339

        return reminders_sql.REMINDER_TEXT.format(
            id=reminder.id, created=rfc3339(reminder.created_at), body=reminder.body
        )

    async def deliver_due_reminders(self) -> list[Reminder]:
        now = self.coord.clock()
        pairs = await self.db.write(lambda c: reminders_sql.deliver_due_tx(c, now=now, render=self._render_reminder))
        self._announce([m for _, m in pairs])
        for agent in {r.agent for r, _ in pairs if r.agent != MANAGER_AGENT}:
            await self.coord.publish_status(agent)
        return [r for r, _ in pairs]

    async def serve_reminder_watchdog(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Deliver reminders when due; those that fell due while the daemon was down go first."""
        await self._serve_deadlines("reminder", self.deliver_due_reminders, reminders_sql.next_due, task_status)

    async def _serve_deadlines(
        self,
        what: str,
        run_due: Callable[[], Awaitable[object]],
        next_due: Callable[[apsw.Connection], float | None],
        task_status: trio.TaskStatus[None],
    ) -> NoReturn:
        """The question watchdog's pattern: do what is due, sleep until the next stored deadline, and wake
        early when the bell rings (a new request or reminder). Ready after the first pass."""
        started = False
        while True:
            bell = self._bells[what] = trio.Event()
            try:
                await run_due()
                next_at = await self.db.read(next_due)
            except HiveError:
                log.warning("%s watchdog could not reach the database; retrying", what, exc_info=True)
                next_at = self.coord.clock() + 1.0
            if not started:
                task_status.started()
                started = True
            timeout = math.inf if next_at is None else max(0.0, next_at - self.coord.clock())
            with trio.move_on_after(timeout):
                await bell.wait()

    # ================================================================== destroy
    async def forget_destroyed(self, name: str) -> None:
        """A destroyed agent's always-allow rules, budget and pending reminders go, so a new agent of the
        same name starts clean; its transcript ages out, and its permission requests stay on the record."""

        def tx(conn: apsw.Connection) -> None:
            permissions_sql.forget_agent_tx(conn, agent=name)
            usage_sql.forget_agent_tx(conn, agent=name)
            reminders_sql.forget_agent_tx(conn, agent=name)

        await self.db.write(tx)
        self.forget(name)


__all__ = ["AgentControl", "HarnessReports", "ServeHarness", "parse_moment"]
