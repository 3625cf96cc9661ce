"""The coordinator: hive-c0re's `Coordinator`, in trio.

It owns the root nursery, the registry of per-agent child nurseries (one per agent socket), the
transient spinners, and the paths; it is the one place adapters ask to change anything. Stores and
the event hub sit below it; socket servers, the dashboard and the CLI sit above and never touch the
database or build a path themselves.

Kept from hive-c0re: one inbox per agent, HelperEvents from `system`, `kick_agent` after a (re)start,
broadcast with a hint. Changed: the `TransientGuard` RAII handle becomes a cancel scope that clears the
spinner however it exits; unregistering an agent cancels its child nursery rather than aborting a task.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn, Protocol

import attrs
import trio

from hive_trio.core.event_hub import Bell, EventHub, Subscription
from hive_trio.core.inbox_bells import InboxBells
from hive_trio.core.reports import HarnessReports
from hive_trio.errors import Busy, Conflict, HiveError, InvalidRequest, sole_error
from hive_trio.records import (
    BROADCAST,
    MANAGER_AGENT,
    OPERATOR,
    SYSTEM_SENDER,
    AgentRecord,
    AgentStatus,
    Approval,
    ApprovalAddedEvent,
    ApprovalDraft,
    ApprovalKind,
    ApprovalResolvedEvent,
    ApprovalStatus,
    ApprovalVerdict,
    ContainerRemovedEvent,
    ContainerStateChangedEvent,
    DashboardEvent,
    DeliveredEvent,
    HelperEvent,
    HelperQuestionAsked,
    LinkState,
    Message,
    Question,
    QuestionAddedEvent,
    QuestionDraft,
    QuestionResolvedEvent,
    RemoteAgent,
    SentEvent,
    Snapshot,
    TransientClearedEvent,
    TransientKind,
    TransientSetEvent,
    rfc3339,
    to_json,
)
from hive_trio.records.federation import Accepted, Arrival, OutboxItem, OutboxStats
from hive_trio.records.harness import AgentUsage
from hive_trio.rules.clock_steps import StepDetector, watchdog_sleep
from hive_trio.rules.config import Config
from hive_trio.rules.federation import RemoteAddress, parse_address
from hive_trio.rules.names import validate_agent_name
from hive_trio.rules.paths import HivePaths
from hive_trio.rules.snapshot_budget import SnapshotBudget, approval_size, question_size, within_budget
from hive_trio.service.journal import current_agent
from hive_trio.store.approvals import Approvals
from hive_trio.store.broker import Broker
from hive_trio.store.database import Database, refuse_a_lost_database
from hive_trio.store.notices import Resolutions, Resolved
from hive_trio.store.outbox import Outbox
from hive_trio.store.questions import OperatorQuestions
from hive_trio.store.roster import Roster
from hive_trio.store.state_lock import StateLock

log = logging.getLogger(__name__)

WallClock = Callable[[], float]
BROADCAST_HINT = "\n\n⚠️ _hint: this was a broadcast and may not need any action from you_"
MAX_RECV_BATCH = 32
# Message bodies one `recv`/`recent` reply may carry, as a share of the frame limit: JSON escaping can
# grow a body up to six times (control characters), so a reply always fits the frame agents read with.
REPLY_BODY_SHARE = 8
# hive-c0re's text says "by the operator" whatever the reason; here the reason says who (a crash, a daemon
# restart, the operator), so a crash restart is never blamed on the operator.
KICK_TEXT = "{reason}\n\nIf you were mid-task, read your notes in {notes} and pick up where you left off."
# Where a container agent sees its notes: hyperhive bind-mounts the notes dir at /state (the manager too).
CONTAINER_NOTES = "/state/"


class ServeSocket(Protocol):
    """How the sockets layer serves one agent's (or the manager's) socket inside its child nursery."""

    def __call__(
        self, coordinator: Coordinator, name: str, path: Path, *, task_status: trio.TaskStatus[None]
    ) -> Awaitable[None]: ...


class LifecycleOps(Protocol):
    """What the lifecycle layer offers the adapters, via `coord.ops`.

    `hive_trio.lifecycle.Lifecycle` runs agents on a backend; `hive_trio.lifecycle.bare.BareLifecycle`
    is the hive without one. Every operation validates the name, runs under `coordinator.transient(...)`,
    and raises a `HiveError` with a reason for a person when refused or failed. `serve` (reconcile, then
    supervise) and `shutdown` (stop what runs, within the caller's deadline) are the assembly's.
    """

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...

    async def shutdown(self) -> None: ...

    async def spawn(self, name: str, *, parent: str | None = None) -> AgentRecord: ...

    async def start(self, name: str) -> None: ...

    async def stop(self, name: str, *, graceful: bool = True) -> None: ...

    async def restart(self, name: str) -> None: ...

    async def rebuild(self, name: str) -> None: ...

    async def destroy(self, name: str, *, purge: bool = False) -> None: ...

    async def purge_tombstone(self, name: str) -> None: ...

    async def request_spawn(self, name: str, description: str | None, *, requested_by: str) -> Approval: ...

    async def request_apply_commit(
        self, agent: str, commit_ref: str, description: str | None, *, requested_by: str
    ) -> Approval: ...

    async def approve(self, approval_id: int, *, note: str | None = None) -> Approval: ...

    async def deny(self, approval_id: int, *, note: str | None = None) -> Approval: ...


class FederationPort(Protocol):
    """What the federation service (`hive_trio.federation.service.Federation`) offers, via `coord.federation`."""

    @property
    def hive(self) -> str: ...

    def check_route(self, sender: str, address: RemoteAddress) -> None: ...

    def wake_forwarder(self) -> None: ...

    def remote_agents(self) -> list[RemoteAgent]: ...

    async def link_state(self) -> LinkState: ...


@attrs.define(eq=False)
class AgentSlot:
    """A registered socket: the child nursery's cancel scope and the file it serves."""

    name: str
    path: Path
    scope: trio.CancelScope
    stopped: trio.Event = attrs.field(factory=trio.Event)


@attrs.frozen
class _Started:
    """A `task_status` for a service awaited in the caller's own task: `started()` calls back at once."""

    callback: Callable[[object], None]

    def started(self, value: object = None) -> None:
        self.callback(value)


@attrs.define(eq=False)
class Transient:
    kind: TransientKind
    since: float
    scope: trio.CancelScope


# Builds the lifecycle for a coordinator (the lifecycle needs the coordinator it serves).
LifecycleFactory = Callable[["Coordinator"], LifecycleOps]


class Coordinator:
    def __init__(
        self,
        *,
        config: Config,
        db: Database,
        nursery: trio.Nursery,
        lifecycle: LifecycleFactory,
        clock: WallClock = time.time,
        serve_socket: ServeSocket | None = None,
    ) -> None:
        self.config = config
        self.paths = HivePaths(config.state_dir, config.runtime_dir)
        self.clock = clock
        self._db = db
        self._hub = EventHub(buffer=config.subscriber_buffer, ring=config.event_ring)
        self._bells = InboxBells()
        self._broker = Broker(db, clock=clock, max_body_bytes=config.max_body_bytes)
        self._roster = Roster(db, clock=clock)
        self._approvals = Approvals(db, clock=clock)
        self._questions = OperatorQuestions(db, clock=clock)
        self._resolutions = Resolutions(db, clock=clock)
        # Distinguishes daemon runs: a dashboard resuming with a seq from another run must resnapshot.
        self.epoch = secrets.token_hex(8)
        self._dashboard_url: str | None = None
        self._root = nursery
        self._serve_socket = serve_socket
        self._slots: dict[str, AgentSlot] = {}
        self._transients: dict[str, Transient] = {}
        self._running: set[str] = set()
        # Mirrors the roster's `paused` column, so `recv` need not read it on every call.
        self._paused: set[str] = set()
        self._deadline_bell = trio.Event()
        self._lifecycle = lifecycle(self)
        # What harnesses report (issue 10): transcripts, usage, permissions, control, reminders.
        self.reports = HarnessReports(self, db=db, hub=self._hub, deliverable=self._deliverable)
        self._outbox = Outbox(db, clock=clock, max_body_bytes=config.max_body_bytes)
        # Set while the federation service runs (config `[federation]`); None on a single-host hive.
        self.federation: FederationPort | None = None

    # ================================================================== registration
    @property
    def root_nursery(self) -> trio.Nursery:
        return self._root

    async def register_agent(self, name: str) -> Path:
        """Serve `name`'s socket in a fresh child nursery; idempotent (the old listener goes first)."""
        validate_agent_name(name)
        self.unregister_agent(name)
        await trio.to_thread.run_sync(self.paths.ensure_agent_dirs, name)
        path = self.paths.agent_socket(name)
        await self._root.start(self._run_slot, name, path)
        return path

    async def register_manager(self) -> Path:
        self.unregister_agent(MANAGER_AGENT)
        path = self.paths.manager_socket
        await self._root.start(self._run_slot, MANAGER_AGENT, path)
        return path

    def unregister_agent(self, name: str) -> bool:
        """Cancel the agent's child nursery and remove its socket file. Calls in `recv` end cleanly."""
        slot = self._slots.pop(name, None)
        if slot is None:
            return False
        slot.scope.cancel()
        with suppress(FileNotFoundError):
            slot.path.unlink()
        return True

    def registered_names(self) -> list[str]:
        return sorted(n for n in self._slots if n != MANAGER_AGENT)

    def is_registered(self, name: str) -> bool:
        return name in self._slots

    async def _run_slot(self, name: str, path: Path, *, task_status: trio.TaskStatus[AgentSlot]) -> None:
        current_agent.set(name)  # this agent's socket tasks inherit it: journald's AGENT= field
        slot = AgentSlot(name=name, path=path, scope=trio.CancelScope())
        started = False

        def on_started(value: object = None) -> None:
            nonlocal started
            self._slots[name] = slot
            task_status.started(slot)
            started = True

        try:
            with slot.scope:
                try:
                    if self._serve_socket is None:
                        on_started()
                        await trio.sleep_forever()
                    # Served in this task: the socket's own nursery (its connections) is the agent's child
                    # nursery, inside the slot's scope. A task and a nursery of the slot's own in between
                    # cost ~3 KiB per agent and did nothing (docs/PERFORMANCE.md).
                    await self._serve_socket(self, name, path, task_status=_Started(on_started))
                except Exception as exc:
                    if not started:
                        # The socket could not be served at all: `register_agent` says why.
                        raise (sole_error(exc) or exc) from None
                    # One agent's socket failing must never take down the daemon or its neighbours.
                    log.exception("socket for %s failed; it is unregistered", name)
        finally:
            if self._slots.get(name) is slot:
                del self._slots[name]
            slot.stopped.set()

    # ================================================================== transients
    @contextmanager
    def transient(self, name: str, kind: TransientKind) -> Iterator[trio.CancelScope]:
        """Show `kind` on `name`'s card for exactly as long as this scope lives.

        Replaces hive-c0re's `TransientGuard`: the clear runs in `finally`, so success, error and
        cancellation all clear it. A second action while one is in flight is refused (`Busy`), not
        queued. The yielded scope is what `cancel_transient` cancels.
        """
        current = self._transients.get(name)
        if current is not None:
            raise Busy(f"{name} is busy {current.kind.value}; wait for it to finish or cancel it")
        entry = Transient(kind=kind, since=self.clock(), scope=trio.CancelScope())
        self._transients[name] = entry
        self._hub.emit(TransientSetEvent(name=name, transient_kind=kind, since_unix=entry.since))
        try:
            with entry.scope:
                yield entry.scope
        finally:
            if self._transients.get(name) is entry:
                del self._transients[name]
            self._hub.emit(TransientClearedEvent(name=name))

    def transient_of(self, name: str) -> TransientKind | None:
        entry = self._transients.get(name)
        return None if entry is None else entry.kind

    def transients(self) -> dict[str, TransientKind]:
        return {n: t.kind for n, t in self._transients.items()}

    def cancel_transient(self, name: str) -> bool:
        entry = self._transients.get(name)
        if entry is None:
            return False
        entry.scope.cancel()
        return True

    # ================================================================== running state
    def set_running(self, name: str, running: bool) -> None:
        """The lifecycle layer reports what it observes; the dashboard hears about every change."""
        changed = (name in self._running) != running
        if running:
            self._running.add(name)
        else:
            self._running.discard(name)
        if changed:
            self._root.start_soon(self.publish_status, name)

    def is_running(self, name: str) -> bool:
        return name in self._running

    async def publish_status(self, name: str) -> None:
        """Emit the agent's current `agent_status` row (or its removal)."""
        try:
            rows = await self.agent_statuses([name])
        except HiveError:
            log.warning("could not read status of %s", name, exc_info=True)
            return
        if rows:
            self._hub.emit(ContainerStateChangedEvent(row=rows[0]))
        else:
            self._hub.emit(ContainerRemovedEvent(name=name))

    # ================================================================== messages
    async def send(self, sender: str, to: str, body: str) -> list[Message]:
        """Commit a message (or a broadcast) and mirror it to the dashboard as `sent`."""
        address = parse_address(to)
        if address is not None:
            if self.federation is None or address.hive != self.federation.hive:
                return [await self._send_remote(sender, address, body)]
            to = address.agent  # `agent@this-hive` is local
        if to == BROADCAST:
            messages = await self._broker.broadcast(sender, body + BROADCAST_HINT)
        else:
            if to == SYSTEM_SENDER:
                raise InvalidRequest("'system' sends messages but never receives them")
            if to != MANAGER_AGENT and to != OPERATOR:
                validate_agent_name(to)
            messages = [await self._broker.send(sender, to, body)]
        self._deliverable(messages)
        return messages

    async def _send_remote(self, sender: str, address: RemoteAddress, body: str) -> Message:
        """Commit the message and its outbox row together; the forwarder takes it from there."""
        federation = self.federation
        if federation is None:
            raise InvalidRequest(f"{address} is on another hive, and this hive is not federated ([federation])")
        federation.check_route(sender, address)
        message = await self._outbox.queue(origin=federation.hive, sender=sender, address=address, body=body)
        federation.wake_forwarder()
        self._hub.emit(SentEvent.of(message))
        return message

    # ================================================================== federation (docs/FEDERATION.md)
    # The federation service moves rows between hive.db and NATS only through these, so the coordinator
    # stays the one writer and announcer.
    async def outbox_pending(self, *, limit: int, skip_hives: Collection[str] = ()) -> list[OutboxItem]:
        return await self._outbox.pending(limit=limit, skip_hives=skip_hives)

    async def settle_outbox(self, *, forwarded: Sequence[int], failed: Sequence[tuple[int, str]]) -> None:
        """JetStream acked `forwarded`; the link refused `failed` for good (each sender hears why)."""
        notices = await self._outbox.settle(forwarded=forwarded, failed=failed)
        self._deliverable(notices)

    async def accept_remote(
        self, arrivals: Sequence[Arrival], *, me: str, isolated: frozenset[str], allows_peer: Callable[[str], bool]
    ) -> list[Accepted]:
        """Messages (and bounces) consumed from the link: commit them once, then wake their recipients."""
        results = await self._outbox.accept(arrivals, me=me, isolated=isolated, allows_peer=allows_peer)
        self._deliverable([m for r in results for m in r.messages])
        return results

    async def outbox_stats(self) -> OutboxStats:
        return await self._outbox.stats()

    async def remote_agents(self) -> list[RemoteAgent]:
        return [] if self.federation is None else self.federation.remote_agents()

    async def link_state(self) -> LinkState | None:
        return None if self.federation is None else await self.federation.link_state()

    def _deliverable(self, messages: Sequence[Message]) -> None:
        """Committed messages: mirror each to the dashboard as `sent`, and wake each recipient's parked `recv`."""
        for m in messages:
            self._hub.emit(SentEvent.of(m))
            self._bells.ring(m.recipient)

    async def recv(self, name: str, *, wait_seconds: float = 0.0, limit: int = 1) -> list[Message]:
        """Hand out up to `limit` messages, parking up to `wait_seconds` for the first one.

        Parking waits on the inbox bell the coordinator rings after a message for `name` commits, so an idle
        agent costs nothing; the database is read once per wake, never polled. A paused agent's turn
        loop is parked here (host.sock `set_paused`): nothing is handed out until it is un-paused.
        """
        limit = max(1, min(int(limit), MAX_RECV_BATCH))
        wait = min(max(float(wait_seconds), 0.0), self.config.max_recv_wait)
        deadline = trio.current_time() + wait
        while True:
            bell = self._bells.bell(name)
            # Shielded: once the batch holding this UPDATE runs, the rows are stamped delivered; a
            # cancellation now would lose the list (and with it the messages) until a requeue.
            # With the shield the caller always gets the list and no checkpoint follows before
            # `return`, so whoever awaited recv can hand the messages on or release them.
            await trio.lowlevel.checkpoint_if_cancelled()
            messages = []
            if name not in self._paused:
                with trio.CancelScope(shield=True):
                    messages = await self._broker.deliver(name, limit=limit, max_bytes=self.reply_body_budget)
            if messages:
                for m in messages:
                    self._hub.emit(DeliveredEvent.of(m))
                return messages
            if trio.current_time() >= deadline:
                return []
            with trio.move_on_at(deadline):
                await bell.wait()

    async def release(self, messages: Sequence[Message]) -> int:
        """The reply carrying `messages` was never written: put them straight back in the inbox."""
        if not messages:
            return 0
        with trio.CancelScope(shield=True):
            count = await self._broker.release([m.id for m in messages])
        for recipient in {m.recipient for m in messages}:
            self._bells.ring(recipient)
        return count

    async def ack_turn(self, name: str) -> int:
        return await self._broker.ack(name)

    async def requeue_inflight(self, name: str) -> int:
        count = await self._broker.requeue_inflight(name)
        if count:
            self._bells.ring(name)
        return count

    async def inbox_depth(self, name: str) -> int:
        return await self._broker.pending_count(name)

    async def message(self, message_id: int) -> Message | None:
        """One message by id (the operator's `reply` answers its sender)."""
        return await self._broker.get(message_id)

    async def recent_messages(self, name: str | None, *, limit: int = 20) -> list[Message]:
        limit = max(1, min(limit, 500))
        return await self._broker.recent(recipient=name, limit=limit, max_bytes=self.reply_body_budget)

    @property
    def reply_body_budget(self) -> int:
        """Body bytes one reply may carry (at least one message always goes, whatever its size)."""
        return max(1, self.config.max_frame_bytes // REPLY_BODY_SHARE)

    # ================================================================== system messages
    async def kick_agent(self, name: str, reason: str) -> None:
        """Drop a "you were (re)started" note from `system` into the inbox. Best-effort, as in hive-c0re."""
        if self.config.backend == "nixos-container":
            notes = CONTAINER_NOTES  # a host path means nothing inside the container
        else:
            notes = str(self.paths.manager_notes if name == MANAGER_AGENT else self.paths.agent_notes(name))
        body = KICK_TEXT.format(reason=reason, notes=notes)
        try:
            await self.send(SYSTEM_SENDER, name, body)
        except HiveError as exc:
            log.warning("kick_agent %s failed: %s", name, exc)

    async def notify_agent(self, name: str, event: HelperEvent) -> None:
        """A HelperEvent as a JSON message from `system`, tagged `event`. Best-effort."""
        try:
            await self.send(SYSTEM_SENDER, name, to_json(event, HelperEvent))
        except HiveError as exc:
            log.warning("could not notify %s of %s: %s", name, type(event).tag_value, exc)

    async def notify_manager(self, event: HelperEvent) -> None:
        await self.notify_agent(MANAGER_AGENT, event)

    # ================================================================== events
    def subscribe(self, *, buffer: int | None = None) -> AbstractContextManager[Subscription]:
        """Subscribe to the dashboard events (adapters read the hub; only the coordinator emits)."""
        return self._hub.subscribe(buffer=buffer)

    def event_bell(self) -> AbstractContextManager[Bell]:
        """A bell rung after each dashboard event (for a reader of many subscriptions at once)."""
        return self._hub.bell()

    def replay_since(self, seq: int) -> list[DashboardEvent] | None:
        return self._hub.replay_since(seq)

    def current_seq(self) -> int:
        return self._hub.current_seq()

    # ================================================================== agents: durable intent
    # The lifecycle layer (and the bare one) change an agent's row only through these, so what is
    # written and what is announced is decided here. The card itself is announced by `set_running`
    # and `publish_status`; these announce only what they alone change.
    async def record_spawn(self, name: str, *, parent: str | None = None) -> AgentRecord:
        """Add `name`'s roster row (`Conflict` if it exists). Its card appears with its spinner."""
        validate_agent_name(name)
        return await self._roster.add(name, parent=parent)

    async def set_desired(self, name: str, desired: str, *, deployed_sha: str | None = None) -> AgentRecord:
        """Record what the operator wants of `name` (`running`/`stopped`); clears a failure."""
        fields: dict[str, Any] = {"desired": desired, "failed": False, "failed_reason": None}
        if deployed_sha is not None:
            fields["deployed_sha"] = deployed_sha
        return await self._roster.update(name, **fields)

    async def record_deployed(self, name: str, sha: str) -> AgentRecord:
        """A build of `sha` succeeded: it is what `name` runs now, and nothing waits for an update."""
        return await self._roster.update(name, deployed_sha=sha, needs_update=False)

    async def set_needs_update(self, name: str, needs_update: bool) -> AgentRecord:
        """Record whether `name` runs an older config or command than it would be started with now."""
        return await self._roster.update(name, needs_update=needs_update)

    async def mark_failed(self, name: str, reason: str) -> None:
        """Record that `name` failed, with a reason for a person, and show it on the card. Best-effort."""
        try:
            await self._roster.update(name, failed=True, failed_reason=reason)
        except HiveError:
            log.warning("could not record that %s failed (%s)", name, reason, exc_info=True)
            return
        await self.publish_status(name)

    async def forget_agent(self, name: str, *, note: str) -> None:
        """Drop `name`'s roster row and fail its pending approvals (each with the manager's notice).

        Its card's removal is announced by `publish_status` once the action's spinner is gone.
        """
        await self._roster.remove(name)
        await self.fail_pending_approvals(name, note=note)
        await self.reports.forget_destroyed(name)

    async def close_inbox(self, name: str) -> int:
        """Purge's mail step: what was still waiting for `name` is closed, never handed to a later agent
        of that name (docs/LIFECYCLE.md). Returns how many messages it closed."""
        if await self._roster.get(name) is not None:
            raise Conflict(f"{name!r} is a live agent; destroy it first")
        return await self._broker.close_inbox(name)

    async def find_agent(self, name: str) -> AgentRecord | None:
        return await self._roster.get(name)

    async def agent_records(self) -> list[AgentRecord]:
        return await self._roster.all()

    # ================================================================== agents
    async def agent_names(self) -> list[str]:
        """Every agent the roster holds, running or not (the manager is not an agent row)."""
        return [r.name for r in await self._roster.all()]

    async def require_agent(self, name: str) -> AgentRecord:
        validate_agent_name(name)
        return await self._roster.require(name)

    def kept_state_names(self) -> list[str]:
        return self.paths.kept_state_names()

    async def tombstones(self) -> list[str]:
        live = set(await self.agent_names())
        return [n for n in self.kept_state_names() if n not in live]

    async def set_status_text(self, name: str, text: str | None) -> AgentRecord:
        record = await self._roster.update(name, status_text=text or None, status_set_at=self.clock() if text else None)
        await self.publish_status(name)
        return record

    async def set_paused(self, name: str, paused: bool) -> AgentRecord:
        await self.require_agent(name)
        record = await self._roster.update(name, paused=paused)
        if paused:
            self._paused.add(name)
        elif name in self._paused:
            self._paused.discard(name)
            self._bells.ring(name)  # a parked recv picks up what waited meanwhile
        self.reports.control_changed(name)  # a harness parked in wait_control hears of it
        await self.publish_status(name)
        return record

    def is_paused(self, name: str) -> bool:
        return name in self._paused

    @property
    def dashboard_url(self) -> str | None:
        """The dashboard's address once it listens (given by the assembly, `daemon.open_hive`), else None."""
        return self._dashboard_url

    def set_dashboard_url(self, url: str | None) -> None:
        self._dashboard_url = url

    def agent_url(self, name: str) -> str | None:
        return None if self._dashboard_url is None else f"{self._dashboard_url}#agent={name}"

    async def agent_statuses(self, names: Sequence[str] | None = None) -> list[AgentStatus]:
        # One read: the rows and the counts agree, and it costs one thread hop rather than two.
        now = self.clock()
        records, counts, (usage, reminders) = await self._roster.with_pending_counts_and(
            names, lambda c, wanted: self.reports.status_extras_tx(c, wanted, now)
        )
        rows = []
        for r in records:
            running = self.is_running(r.name)
            rows.append(
                AgentStatus(
                    name=r.name,
                    running=running,
                    failed=r.failed,
                    needs_update=r.needs_update,
                    needs_login=r.needs_login,
                    paused=r.paused,
                    parent=r.parent,
                    deployed_sha=r.deployed_sha[:12] if r.deployed_sha else None,
                    active_model=r.active_model,
                    # hyperhive shows status text only for a running agent.
                    status_text=r.status_text if running else None,
                    status_set_at=rfc3339(r.status_set_at) if running and r.status_text else None,
                    url=self.agent_url(r.name),
                    transient=self.transient_of(r.name),
                    pending_messages=counts.get(r.name, 0),
                    failed_reason=r.failed_reason if r.failed else None,
                    usage=usage.get(r.name, AgentUsage()),
                    budget_exceeded=usage.get(r.name, AgentUsage()).budget_exceeded,
                    pending_reminders=reminders.get(r.name, 0),
                )
            )
        return rows

    # ================================================================== approvals
    async def propose_approval(
        self,
        agent: str,
        kind: ApprovalKind,
        *,
        commit_ref: str | None = None,
        description: str | None = None,
        requested_by: str = OPERATOR,
    ) -> Approval:
        """Record a pending approval; a spawn is announced at once, a commit once `pin_proposal` pins it."""
        draft = ApprovalDraft(
            agent=agent, kind=kind, commit_ref=commit_ref, description=description, requested_by=requested_by
        )
        approval = await self._approvals.add(draft)
        if kind is ApprovalKind.SPAWN:
            self._announce_approval(approval)
        return approval

    async def pin_proposal(self, approval_id: int, *, fetched_sha: str, diff: str, announce: bool) -> Approval:
        """Record the commit a proposal was pinned to and its diff; `announce` shows it for review.

        A proposal re-pinned after a daemon restart was already on the page (the snapshot lists it).
        """
        approval = await self._approvals.set_fetched(approval_id, fetched_sha=fetched_sha, diff=diff)
        if announce:
            self._announce_approval(approval)
        return approval

    async def get_approval(self, approval_id: int) -> Approval:
        return await self._approvals.get(approval_id)

    def _announce_approval(self, approval: Approval) -> None:
        self._hub.emit(ApprovalAddedEvent.of(approval))

    async def resolve_approval(
        self,
        approval_id: int,
        status: ApprovalStatus,
        *,
        note: str | None = None,
        tag: str | None = None,
        roster_update: Mapping[str, Any] | None = None,
    ) -> Approval:
        """Move a pending approval to `status` (compare-and-set), telling the manager in the same transaction.

        `roster_update` changes the agent's row in that transaction too (an approved deploy records its
        `deployed_sha` with its approval). `Conflict` if it was not pending; then nothing changes.
        """
        verdict = ApprovalVerdict(status=status, note=note, tag=tag, roster_update=roster_update)
        resolved, notice = await self._resolutions.resolve_approval(approval_id, verdict)
        await self._approvals_resolved([(resolved, notice)], roster_changed=bool(roster_update))
        return resolved

    async def fail_pending_approvals(self, agent: str, *, note: str) -> list[Approval]:
        """Fail every pending approval of `agent` (it is being destroyed), each with the manager's notice."""
        pairs = await self._resolutions.fail_pending_approvals(agent, note=note)
        await self._approvals_resolved(pairs, roster_changed=False)
        return [a for a, _ in pairs]

    async def _approvals_resolved(self, pairs: list[Resolved[Approval]], *, roster_changed: bool) -> None:
        """Announce committed resolutions (`store.notices` wrote each with its notice): the dashboard's
        event, the notice's `sent`, and the agent's card when its row changed with it."""
        for approval, notice in pairs:
            self._hub.emit(ApprovalResolvedEvent.of(approval))
            if notice is not None:
                self._deliverable([notice])
            if roster_changed:
                await self.publish_status(approval.agent)

    @property
    def ops(self) -> LifecycleOps:
        """The lifecycle operations; adapters call these rather than touching backends."""
        return self._lifecycle

    async def list_approvals(self, *, status: ApprovalStatus | None = None) -> list[Approval]:
        return await self._approvals.query(status=status)

    # ================================================================== questions
    async def ask(
        self,
        asker: str,
        question: str,
        *,
        options: Sequence[str] = (),
        multi: bool = False,
        ttl_seconds: float | None = None,
        target: str | None = None,
        default_answer: str | None = None,
    ) -> Question:
        if target is not None:
            if target == OPERATOR:
                target = None
            elif target == asker:
                raise InvalidRequest("an agent cannot ask itself")
            elif target != MANAGER_AGENT:
                await self.require_agent(target)
        if ttl_seconds is not None and not math.isfinite(ttl_seconds):
            raise InvalidRequest("ttl_seconds must be a finite number")
        draft = QuestionDraft(
            asker=asker,
            question=question,
            options=list(options),
            multi=multi,
            default_answer=default_answer,
            ttl_seconds=ttl_seconds,
            target=target,
        )
        q = await self._questions.ask(draft)
        if q.target is None:
            self._hub.emit(QuestionAddedEvent.of(q))
        else:
            await self.notify_agent(q.target, HelperQuestionAsked.of(q))
        if q.deadline_at is not None:
            self._deadline_bell.set()
        return q

    async def answer_question(self, question_id: int, answer: str | Sequence[str], *, answerer: str) -> Question:
        """Answer as `answerer`: the operator may answer anything; an agent only what was asked of it."""
        q = await self._questions.get(question_id)
        if answerer != OPERATOR and q.target != answerer:
            who = "the operator" if q.target is None else repr(q.target)
            raise Conflict(f"question #{question_id} was asked of {who}, not {answerer!r}")
        if not isinstance(answer, str):
            answer = ", ".join(answer)
        if not answer.strip():
            raise InvalidRequest("answer is empty")
        resolved, notice = await self._resolutions.answer_question(question_id, answer, answerer=answerer)
        self._question_resolved(resolved, notice)
        return resolved

    async def cancel_question(self, question_id: int, *, by: str = OPERATOR) -> Question:
        q = await self._questions.get(question_id)
        if by not in (OPERATOR, q.asker):
            raise Conflict(f"only the operator or {q.asker!r} may cancel question #{question_id}")
        resolved, notice = await self._resolutions.cancel_question(question_id, by=by)
        self._question_resolved(resolved, notice)
        return resolved

    async def expire_questions(self) -> list[Question]:
        pairs = await self._resolutions.expire_questions()
        for q, notice in pairs:
            self._question_resolved(q, notice)
        return [q for q, _ in pairs]

    def _question_resolved(self, q: Question, notice: Message | None) -> None:
        """Mirror a committed resolution: the dashboard's event (operator questions), the asker's notice."""
        if q.target is None:
            self._hub.emit(QuestionResolvedEvent.of(q))
        if notice is None:
            log.warning("question #%d resolved, but its asker %s has no inbox any more", q.id, q.asker)
        else:
            self._deliverable([notice])

    async def get_question(self, question_id: int) -> Question:
        return await self._questions.get(question_id)

    async def list_questions(self, *, recent: int | None = None) -> list[Question]:
        """Open questions, or with `recent` the last that many, answered ones too."""
        if recent is None:
            return await self._questions.list_open()
        return await self._questions.list_recent(limit=recent)

    async def serve_question_watchdog(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Resolve questions at their deadlines. Sleeps until the next one (at most `RECHECK_INTERVAL`, in
        case the wall clock is stepped); a new question wakes it.

        Deadlines that passed while the daemon was down are resolved on the first pass.
        """
        started = False
        steps = StepDetector()
        while True:
            bell = self._deadline_bell = trio.Event()
            jump = steps.step(self.clock(), trio.current_time())
            if jump is not None:
                log.warning("the wall clock stepped by %+.1f s; question deadlines re-checked", jump)
            try:
                await self.expire_questions()
                next_at = await self._questions.next_deadline()
            except HiveError:
                log.warning("question watchdog could not reach the database; retrying", exc_info=True)
                next_at = self.clock() + 1.0
            if not started:
                task_status.started()
                started = True
            # Bounded, so a wall clock stepped forward past a deadline is noticed (rules.clock_steps).
            with trio.move_on_after(watchdog_sleep(next_at, self.clock())):
                await bell.wait()

    # ================================================================== snapshot
    async def snapshot(self, *, message_limit: int = 100) -> Snapshot:
        seq = self._hub.current_seq()  # before gathering: anything later has a larger seq
        agents = await self.agent_statuses()
        # Each part bounded, so the snapshot fits a 1 MiB frame however much is open (rules.snapshot_budget).
        budget = SnapshotBudget.share(self.config.snapshot_budget_bytes)
        approvals, approvals_left = within_budget(
            await self._approvals.query(status=ApprovalStatus.PENDING), size=approval_size, max_bytes=budget.approvals
        )
        questions, questions_left = within_budget(
            await self._questions.list_open(operator_only=True), size=question_size, max_bytes=budget.questions
        )
        messages = await self._broker.recent(limit=message_limit, max_bytes=budget.messages)
        tombstones = await self.tombstones()
        permissions = await self.reports.snapshot_permissions()
        omitted = {k: n for k, n in (("approvals", approvals_left), ("questions", questions_left)) if n}
        remote_agents = await self.remote_agents()
        link = await self.link_state()
        return Snapshot(
            seq=seq,
            epoch=self.epoch,
            agents=agents,
            approvals=approvals,
            questions=questions,
            messages=messages,
            tombstones=tombstones,
            permissions=permissions,
            omitted=omitted,
            remote_agents=remote_agents,
            link=link,
        )

    # ================================================================== maintenance
    async def vacuum(self) -> int:
        retention = self.config.retention_days * 86400
        dropped = await self._broker.vacuum(retention_seconds=retention)
        await self.reports.vacuum()
        return dropped + await self._outbox.vacuum(retention_seconds=retention)

    async def serve_vacuum(
        self, *, interval: float = 3600.0, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Drop acked messages past retention, now and every `interval` seconds; ready after the first pass."""
        started = False
        while True:
            try:
                dropped = await self.vacuum()
                if dropped:
                    log.info("vacuum dropped %d acked messages past retention", dropped)
            except HiveError:
                log.warning("vacuum failed", exc_info=True)
            if not started:
                task_status.started()
                started = True
            await trio.sleep(interval)

    async def serve_checkpoints(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """hive.db's WAL checkpointed every `checkpoint_interval` with writes, truncated once idle."""
        await self._db.serve_checkpoints(interval=self.config.checkpoint_interval, task_status=task_status)


@asynccontextmanager
async def open_coordinator(
    config: Config,
    *,
    lifecycle: LifecycleFactory,
    clock: WallClock = time.time,
    serve_socket: ServeSocket | None = None,
) -> AsyncIterator[Coordinator]:
    """Lock `state_dir`, open `hive.db`, and run the root nursery for as long as the block lives.

    `lifecycle` builds the coordinator's `LifecycleOps` (`Lifecycle` with a backend, or `BareLifecycle`);
    the caller starts its `serve`.

    On exit every child nursery is cancelled; tasks clean up in their own shielded, time-boxed
    scopes. The database closes last, after any batch still in its thread, so no write is cut off.
    """
    paths = HivePaths(config.state_dir, config.runtime_dir)
    await trio.to_thread.run_sync(paths.ensure_daemon_dirs)
    lock = StateLock(paths.lock)
    lock.acquire()
    try:
        kept = await trio.to_thread.run_sync(paths.kept_with_repos)
        refuse_a_lost_database(paths.db, kept, fresh=config.fresh)
        db = await Database.open(paths.db, synchronous=config.synchronous)
        try:
            async with trio.open_nursery() as nursery:
                coord = Coordinator(
                    config=config, db=db, nursery=nursery, lifecycle=lifecycle, clock=clock, serve_socket=serve_socket
                )
                coord._paused = {r.name for r in await coord._roster.all() if r.paused}
                try:
                    yield coord
                finally:
                    for name in list(coord._slots):
                        coord.unregister_agent(name)
                    nursery.cancel_scope.cancel()
        finally:
            await db.aclose()
    finally:
        lock.release()


__all__ = [
    "AgentSlot",
    "Coordinator",
    "LifecycleFactory",
    "LifecycleOps",
    "ServeSocket",
    "WallClock",
    "open_coordinator",
]
