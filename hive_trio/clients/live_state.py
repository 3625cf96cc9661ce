"""What a dashboard client knows: a snapshot with the stream's events applied, idempotently.

SPEC §4: a client must tolerate an event whose effect the snapshot already shows, so every change is
applied by id (an approval resolved twice is resolved once; a message already in the snapshot's log is
not logged again). The web page does the same in JavaScript. Pure data; no I/O, no trio.
"""

from __future__ import annotations

from collections import deque
from typing import Final, TypeAlias

import attrs

from hive_trio.records import (
    AgentStatus,
    ApprovalAddedEvent,
    ApprovalResolvedEvent,
    ContainerRemovedEvent,
    ContainerStateChangedEvent,
    DashboardEvent,
    DeliveredEvent,
    QuestionAddedEvent,
    QuestionResolvedEvent,
    SentEvent,
    Snapshot,
    TransientClearedEvent,
    TransientKind,
    TransientSetEvent,
)
from hive_trio.records.carry import carried
from hive_trio.records.harness import PermissionAddedEvent, PermissionRequest, PermissionResolvedEvent

LOG_LIMIT: Final = 500


# The open approvals and questions are kept as the events that announced them (a snapshot's rows are
# turned into the same events), so the state has no second copy of their fields to keep in step.
PendingApproval: TypeAlias = ApprovalAddedEvent
OpenQuestion: TypeAlias = QuestionAddedEvent


@attrs.frozen
class LogEntry:
    sender: str
    recipient: str
    body: str
    at: float
    delivered: bool = False
    # The message's id (a daemon that predates ids on events sends none; then content matches).
    id: int | None = None


@attrs.define
class LiveState:
    epoch: str | None = None
    seq: int = 0
    agents: dict[str, AgentStatus] = attrs.field(factory=dict)
    transients: dict[str, TransientKind] = attrs.field(factory=dict)
    approvals: dict[int, PendingApproval] = attrs.field(factory=dict)
    questions: dict[int, OpenQuestion] = attrs.field(factory=dict)
    log: deque[LogEntry] = attrs.field(factory=lambda: deque(maxlen=LOG_LIMIT))
    tombstones: list[str] = attrs.field(factory=list)
    # Open permission requests from harnesses, by id.
    permissions: dict[int, PermissionRequest] = attrs.field(factory=dict)

    def load(self, snapshot: Snapshot) -> None:
        """Replace everything with `snapshot` (a connect, or a resync after falling behind)."""
        self.epoch, self.seq = snapshot.epoch, snapshot.seq
        self.agents = {row.name: row for row in snapshot.agents}
        self.transients = {row.name: row.transient for row in snapshot.agents if row.transient is not None}
        self.approvals = {a.id: ApprovalAddedEvent.of(a) for a in snapshot.approvals}
        self.questions = {q.id: QuestionAddedEvent.of(q) for q in snapshot.questions if q.target is None and q.is_open}
        self.log = deque(
            (
                LogEntry(m.sender, m.recipient, m.body, m.sent_at, delivered=m.delivered_at is not None, id=m.id)
                for m in snapshot.messages
            ),
            maxlen=LOG_LIMIT,
        )
        self.tombstones = list(snapshot.tombstones)
        self.permissions = {p.id: p for p in snapshot.permissions if p.is_open}

    def apply(self, event: DashboardEvent) -> None:
        """Apply one live event; applying one the state already shows changes nothing."""
        self.seq = max(self.seq, event.seq)
        match event:
            case SentEvent():
                entry = LogEntry(event.sender, event.recipient, event.body, event.at, id=event.id)
                if self._find(entry) is None:
                    self.log.append(entry)
            case DeliveredEvent():
                self._mark_delivered(event)
            case ApprovalAddedEvent():
                self.approvals[event.id] = event
            case ApprovalResolvedEvent():
                self.approvals.pop(event.id, None)
            case QuestionAddedEvent():
                self.questions[event.id] = event
            case QuestionResolvedEvent():
                self.questions.pop(event.id, None)
            case TransientSetEvent():
                self.transients[event.name] = event.transient_kind
                self._set_row_transient(event.name, event.transient_kind)
            case TransientClearedEvent():
                self.transients.pop(event.name, None)
                self._set_row_transient(event.name, None)
            case ContainerStateChangedEvent():
                row = event.row
                # The row was read when it was published; a spinner set or cleared since wins.
                self.agents[row.name] = attrs.evolve(row, transient=self.transients.get(row.name))
                if row.name in self.tombstones:
                    self.tombstones.remove(row.name)
            case ContainerRemovedEvent():
                self.agents.pop(event.name, None)
                self.transients.pop(event.name, None)
            case PermissionAddedEvent():
                self.permissions[event.id] = carried(PermissionRequest, event)
            case PermissionResolvedEvent():
                self.permissions.pop(event.id, None)

    def _find(self, entry: LogEntry) -> int | None:
        # Newest first: a duplicate is an event racing the snapshot, so it is near the end.
        for i in range(len(self.log) - 1, -1, -1):
            if _same_message(self.log[i], entry.id, entry.sender, entry.recipient, entry.body, entry.at):
                return i
        return None

    def _mark_delivered(self, event: DeliveredEvent) -> None:
        for i in range(len(self.log) - 1, -1, -1):
            e = self.log[i]
            if not e.delivered and _same_message(e, event.id, event.sender, event.recipient, event.body, None):
                self.log[i] = attrs.evolve(e, delivered=True)
                return

    def _set_row_transient(self, name: str, kind: TransientKind | None) -> None:
        row = self.agents.get(name)
        if row is not None:
            self.agents[name] = attrs.evolve(row, transient=kind)


def _same_message(e: LogEntry, mid: int | None, sender: str, recipient: str, body: str, at: float | None) -> bool:
    """By id when both sides carry one; by content only for events from a daemon without ids."""
    if mid is not None and e.id is not None:
        return e.id == mid
    return (e.sender, e.recipient, e.body) == (sender, recipient, body) and (at is None or e.at == at)


__all__ = ["LOG_LIMIT", "LiveState", "LogEntry", "OpenQuestion", "PendingApproval"]
