"""Event shapes: HelperEvent bodies (messages from `system`) and the dashboard's DashboardEvent family.

Imports only sibling record modules. It must never grow behaviour beyond shape.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, TypeAlias

import attrs

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

# ------------------------------------------------------------------------------------ HelperEvent
# Bodies of messages from `system`, tagged `event` as hyperhive's harnesses expect.


@attrs.frozen
class HelperApprovalResolved:
    tag_value: ClassVar[str] = "approval_resolved"
    id: int
    agent: str
    status: ApprovalStatus
    note: str | None = None
    sha: str | None = None
    tag: str | None = None


@attrs.frozen
class HelperSpawned:
    tag_value: ClassVar[str] = "spawned"
    agent: str


@attrs.frozen
class HelperRebuilt:
    tag_value: ClassVar[str] = "rebuilt"
    agent: str
    sha: str | None = None
    tag: str | None = None


@attrs.frozen
class HelperKilled:
    tag_value: ClassVar[str] = "killed"
    agent: str


@attrs.frozen
class HelperDestroyed:
    tag_value: ClassVar[str] = "destroyed"
    agent: str


@attrs.frozen
class HelperContainerCrash:
    tag_value: ClassVar[str] = "container_crash"
    agent: str
    note: str | None = None


@attrs.frozen
class HelperNeedsUpdate:
    tag_value: ClassVar[str] = "needs_update"
    agent: str


@attrs.frozen
class HelperQuestionAsked:
    tag_value: ClassVar[str] = "question_asked"
    id: int
    asker: str
    question: str
    options: list[str] = attrs.field(factory=list)
    multi: bool = False
    deadline_at: float | None = None

    @classmethod
    def of(cls, q: Question) -> HelperQuestionAsked:
        return cls(
            id=q.id, asker=q.asker, question=q.question, options=q.options, multi=q.multi, deadline_at=q.deadline_at
        )


@attrs.frozen
class HelperQuestionAnswered:
    tag_value: ClassVar[str] = "question_answered"
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
)
HELPER_EVENT_TYPES: Final[tuple[type[Any], ...]] = HelperEvent.__args__

# --------------------------------------------------------------------------------- DashboardEvent
# Kind names and fields are hyperhive's (SPEC §4). `seq` is stamped by the event hub.


@attrs.frozen
class SentEvent:
    tag_value: ClassVar[str] = "sent"
    sender: str
    recipient: str
    body: str
    at: float
    # The message's id, so clients match `delivered` to it (older clients ignore the extra key).
    id: int | None = None
    seq: int = 0

    @classmethod
    def of(cls, m: Message) -> SentEvent:
        return cls(sender=m.sender, recipient=m.recipient, body=m.body, at=m.sent_at, id=m.id)


@attrs.frozen
class DeliveredEvent:
    tag_value: ClassVar[str] = "delivered"
    sender: str
    recipient: str
    body: str
    at: float
    id: int | None = None
    seq: int = 0

    @classmethod
    def of(cls, m: Message) -> DeliveredEvent:
        """From the row `deliver` stamped: `at` is its `delivered_at`."""
        assert m.delivered_at is not None
        return cls(sender=m.sender, recipient=m.recipient, body=m.body, at=m.delivered_at, id=m.id)


@attrs.frozen
class ApprovalAddedEvent:
    tag_value: ClassVar[str] = "approval_added"
    id: int
    agent: str
    approval_kind: ApprovalKind
    sha_short: str | None
    diff: str | None
    description: str | None
    seq: int = 0

    @classmethod
    def of(cls, a: Approval) -> ApprovalAddedEvent:
        return cls(
            id=a.id,
            agent=a.agent,
            approval_kind=a.kind,
            sha_short=short_sha(a.fetched_sha),
            diff=a.diff,
            description=a.description,
        )


@attrs.frozen
class ApprovalResolvedEvent:
    tag_value: ClassVar[str] = "approval_resolved"
    id: int
    agent: str
    approval_kind: ApprovalKind
    sha_short: str | None
    status: ApprovalStatus
    resolved_at: float
    note: str | None
    description: str | None
    seq: int = 0

    @classmethod
    def of(cls, a: Approval) -> ApprovalResolvedEvent:
        assert a.resolved_at is not None
        return cls(
            id=a.id,
            agent=a.agent,
            approval_kind=a.kind,
            sha_short=short_sha(a.fetched_sha),
            status=a.status,
            resolved_at=a.resolved_at,
            note=a.note,
            description=a.description,
        )


@attrs.frozen
class QuestionAddedEvent:
    tag_value: ClassVar[str] = "question_added"
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
        return cls(
            id=q.id,
            asker=q.asker,
            question=q.question,
            options=q.options,
            multi=q.multi,
            asked_at=q.asked_at,
            deadline_at=q.deadline_at,
            default_answer=q.default_answer,
        )


@attrs.frozen
class QuestionResolvedEvent:
    tag_value: ClassVar[str] = "question_resolved"
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
class TransientSetEvent:
    tag_value: ClassVar[str] = "transient_set"
    name: str
    transient_kind: TransientKind
    since_unix: float
    seq: int = 0


@attrs.frozen
class TransientClearedEvent:
    tag_value: ClassVar[str] = "transient_cleared"
    name: str
    seq: int = 0


@attrs.frozen
class ContainerStateChangedEvent:
    tag_value: ClassVar[str] = "container_state_changed"
    row: AgentStatus
    seq: int = 0


@attrs.frozen
class ContainerRemovedEvent:
    tag_value: ClassVar[str] = "container_removed"
    name: str
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
)
DASHBOARD_EVENT_TYPES: Final[tuple[type[Any], ...]] = DashboardEvent.__args__
