"""Event shapes: HelperEvent bodies (messages from `system`) and the dashboard's DashboardEvent family.

Imports only sibling record modules. It must never grow behaviour beyond shape.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import attrs

from hive_trio.records.bases import AboutAgent, AgentNote
from hive_trio.records.carry import carried
from hive_trio.records.federation import HelperUndeliverable
from hive_trio.records.harness import (
    HelperBudgetExceeded,
    HelperLoggedIn,
    HelperNeedsLogin,
    HelperTurnFailed,
    PermissionAddedEvent,
    PermissionResolvedEvent,
    TurnEventEvent,
    TurnFinishedEvent,
    TurnStartedEvent,
)
from hive_trio.records.rows import (
    AgentStatus,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    Message,
    Question,
    TransientKind,
    short_sha,
)
from hive_trio.records.tagged import Tagged

# ------------------------------------------------------------------------------------ HelperEvent
# Bodies of messages from `system`, tagged `event` as hyperhive's harnesses expect.


@attrs.frozen
class HelperApprovalResolved(Tagged, tag="approval_resolved"):
    id: int
    agent: str
    status: ApprovalStatus
    note: str | None = None
    sha: str | None = None
    tag: str | None = None


class HelperSpawned(AboutAgent, tag="spawned"): ...


class HelperKilled(AboutAgent, tag="killed"): ...


class HelperDestroyed(AboutAgent, tag="destroyed"): ...


class HelperNeedsUpdate(AboutAgent, tag="needs_update"): ...


@attrs.frozen
class HelperRebuilt(Tagged, tag="rebuilt"):
    agent: str
    sha: str | None = None
    tag: str | None = None


class HelperContainerCrash(AgentNote, tag="container_crash"): ...


@attrs.frozen
class HelperQuestionAsked(Tagged, tag="question_asked"):
    id: int
    asker: str
    question: str
    options: list[str] = attrs.field(factory=list)
    multi: bool = False
    deadline_at: float | None = None

    @classmethod
    def of(cls, q: Question) -> HelperQuestionAsked:
        return carried(cls, q)


@attrs.frozen
class HelperQuestionAnswered(Tagged, tag="question_answered"):
    id: int
    question: str
    answer: str
    answerer: str


HelperEvent: TypeAlias = (
    HelperApprovalResolved
    | HelperSpawned
    | HelperRebuilt
    | HelperKilled
    | HelperDestroyed
    | HelperContainerCrash
    | HelperNeedsUpdate
    | HelperQuestionAsked
    | HelperQuestionAnswered
    | HelperNeedsLogin
    | HelperLoggedIn
    | HelperTurnFailed
    | HelperBudgetExceeded
    | HelperUndeliverable
)
HELPER_EVENT_TYPES: Final[tuple[type[Any], ...]] = HelperEvent.__args__

# --------------------------------------------------------------------------------- DashboardEvent
# Kind names and fields are hyperhive's (SPEC §4). `seq` is stamped by the event hub.


@attrs.frozen
class _MessageShown(Tagged):
    """A message as both `sent` and `delivered` show it; `at` is when that happened."""

    sender: str
    recipient: str
    body: str
    at: float
    # The message's id, so clients match `delivered` to it (older clients ignore the extra key).
    id: int | None = None
    seq: int = 0


class SentEvent(_MessageShown, tag="sent"):
    @classmethod
    def of(cls, m: Message) -> SentEvent:
        return cls(sender=m.sender, recipient=m.recipient, body=m.body, at=m.sent_at, id=m.id)


class DeliveredEvent(_MessageShown, tag="delivered"):
    @classmethod
    def of(cls, m: Message) -> DeliveredEvent:
        """From the row `deliver` stamped: `at` is its `delivered_at`."""
        assert m.delivered_at is not None
        return cls(sender=m.sender, recipient=m.recipient, body=m.body, at=m.delivered_at, id=m.id)


@attrs.frozen
class _ApprovalShown(Tagged):
    """What both approval events say of the approval (these fields first, in this order, on the wire)."""

    id: int
    agent: str
    approval_kind: ApprovalKind
    sha_short: str | None

    @staticmethod
    def _about(a: Approval) -> dict[str, Any]:
        return {"id": a.id, "agent": a.agent, "approval_kind": a.kind, "sha_short": short_sha(a.fetched_sha)}


@attrs.frozen
class ApprovalAddedEvent(_ApprovalShown, tag="approval_added"):
    diff: str | None
    description: str | None
    seq: int = 0

    @classmethod
    def of(cls, a: Approval) -> ApprovalAddedEvent:
        return cls(**cls._about(a), diff=a.diff, description=a.description)


@attrs.frozen
class ApprovalResolvedEvent(_ApprovalShown, tag="approval_resolved"):
    status: ApprovalStatus
    resolved_at: float
    note: str | None
    description: str | None
    seq: int = 0

    @classmethod
    def of(cls, a: Approval) -> ApprovalResolvedEvent:
        assert a.resolved_at is not None
        about = cls._about(a)
        return cls(**about, status=a.status, resolved_at=a.resolved_at, note=a.note, description=a.description)


@attrs.frozen
class QuestionAddedEvent(Tagged, tag="question_added"):
    id: int
    asker: str
    question: str
    options: list[str]
    multi: bool
    asked_at: float
    deadline_at: float | None
    default_answer: str | None = None
    seq: int = 0

    @classmethod
    def of(cls, q: Question) -> QuestionAddedEvent:
        return carried(cls, q)


@attrs.frozen
class QuestionResolvedEvent(Tagged, tag="question_resolved"):
    id: int
    answer: str
    answerer: str
    answered_at: float
    cancelled: bool
    seq: int = 0

    @classmethod
    def of(cls, q: Question) -> QuestionResolvedEvent:
        assert q.answer is not None and q.answerer is not None and q.answered_at is not None
        return cls(id=q.id, answer=q.answer, answerer=q.answerer, answered_at=q.answered_at, cancelled=q.cancelled)


@attrs.frozen
class TransientSetEvent(Tagged, tag="transient_set"):
    name: str
    transient_kind: TransientKind
    since_unix: float
    seq: int = 0


@attrs.frozen
class _NameGone(Tagged):
    """A dashboard event that names only the agent."""

    name: str
    seq: int = 0


class TransientClearedEvent(_NameGone, tag="transient_cleared"): ...


class ContainerRemovedEvent(_NameGone, tag="container_removed"): ...


@attrs.frozen
class ContainerStateChangedEvent(Tagged, tag="container_state_changed"):
    row: AgentStatus
    seq: int = 0


DashboardEvent: TypeAlias = (
    SentEvent
    | DeliveredEvent
    | ApprovalAddedEvent
    | ApprovalResolvedEvent
    | QuestionAddedEvent
    | QuestionResolvedEvent
    | TransientSetEvent
    | TransientClearedEvent
    | ContainerStateChangedEvent
    | ContainerRemovedEvent
    | TurnStartedEvent
    | TurnEventEvent
    | TurnFinishedEvent
    | PermissionAddedEvent
    | PermissionResolvedEvent
)
DASHBOARD_EVENT_TYPES: Final[tuple[type[Any], ...]] = DashboardEvent.__args__
