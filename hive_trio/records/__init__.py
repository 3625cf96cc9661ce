"""Every record that crosses a wire or lands in a row, and the one converter that encodes them.

This module imports nothing else of hive_trio's. Every surface (MCP results, host.sock rows, dashboard
frames, HelperEvent bodies) encodes through ``CONVERTER`` so a field is named in exactly one place.
It must never grow behaviour beyond shape and encoding.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, TypeAlias, TypeVar, cast

import attrs
import cattrs
from cattrs.cols import is_sequence, list_structure_factory
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.strategies import configure_tagged_union
from cattrs.v import format_exception

from hive_trio.records.federation import HelperUndeliverable as HelperUndeliverable
from hive_trio.records.federation import LinkState as LinkState
from hive_trio.records.federation import RemoteAgent as RemoteAgent
from hive_trio.records.federation import RemoteAgentRow as RemoteAgentRow
from hive_trio.records.federation import WireBounce as WireBounce
from hive_trio.records.federation import WireMessage as WireMessage
from hive_trio.records.federation import WireRoster as WireRoster

T = TypeVar("T")

SYSTEM_SENDER: Final = "system"
MANAGER_AGENT: Final = "manager"
OPERATOR: Final = "operator"
BROADCAST: Final = "*"
# hyperhive's watchdog sentinel for a question nobody answered in time, and its answerer.
EXPIRED_ANSWER: Final = "[expired]"
CANCELLED_ANSWER: Final = "[cancelled]"
TTL_ANSWERER: Final = "ttl"


class RecordError(ValueError):
    """Input that does not decode into the record it claims to be. The message is for a person."""


class ApprovalKind(enum.Enum):
    SPAWN = "spawn"
    APPLY_COMMIT = "apply_commit"


class ApprovalStatus(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TransientKind(enum.Enum):
    """What a lifecycle action in flight shows on the dashboard (hive-c0re's `TransientKind`)."""

    SPAWNING = "spawning"
    STARTING = "starting"
    STOPPING = "stopping"
    RESTARTING = "restarting"
    REBUILDING = "rebuilding"
    DESTROYING = "destroying"


# ---------------------------------------------------------------------------------------------- rows


@attrs.frozen
class Message:
    """A row of the broker's `messages` table."""

    id: int
    sender: str
    recipient: str
    body: str
    sent_at: float
    delivered_at: float | None = None
    acked_at: float | None = None
    redelivered: bool = False


@attrs.frozen
class Delivery:
    """One message as `recv` hands it to an agent."""

    id: int
    sender: str
    body: str
    sent_at: float
    redelivered: bool


@attrs.frozen
class Approval:
    id: int
    agent: str
    kind: ApprovalKind
    status: ApprovalStatus
    requested_at: float
    commit_ref: str | None = None
    fetched_sha: str | None = None
    description: str | None = None
    diff: str | None = None
    note: str | None = None
    resolved_at: float | None = None
    requested_by: str | None = None


@attrs.frozen
class Question:
    id: int
    asker: str
    question: str
    asked_at: float
    target: str | None = None
    options: list[str] = attrs.field(factory=list)
    multi: bool = False
    default_answer: str | None = None
    deadline_at: float | None = None
    answer: str | None = None
    answerer: str | None = None
    cancelled: bool = False
    answered_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self.answer is None


def short_sha(sha: str | None) -> str | None:
    """A commit as people read it: its first 12 hex digits."""
    return sha[:12] if sha else None


@attrs.frozen
class AgentRecord:
    """What the daemon has recorded about an agent (table `agents`): intent, not observation."""

    name: str
    created_at: float
    parent: str | None = None
    # "running" when the operator wants it up, "stopped" after an operator stop.
    desired: str = "running"
    failed: bool = False
    paused: bool = False
    needs_update: bool = False
    needs_login: bool = False
    deployed_sha: str | None = None
    active_model: str | None = None
    status_text: str | None = None
    status_set_at: float | None = None
    # Why `failed` is set (restart limit reached, a start that could not happen); None otherwise.
    failed_reason: str | None = None


@attrs.frozen
class AgentStatus:
    """One `agent_status` row, with hyperhive's field names (host.sock v1) plus ours."""

    name: str
    running: bool
    failed: bool
    needs_update: bool
    needs_login: bool
    paused: bool
    parent: str | None
    deployed_sha: str | None
    active_model: str | None
    status_text: str | None
    status_set_at: str | None
    url: str | None
    transient: TransientKind | None = None
    pending_messages: int = 0
    failed_reason: str | None = None


@attrs.frozen
class PidRecord:
    """What the process backend writes beside a running agent, so a daemon restarted after SIGKILL can
    find the process it left behind and stop it (`pid` and `start_ticks` identify it in `/proc`)."""

    name: str
    pid: int
    pgid: int
    boot_id: str
    start_ticks: int
    command: str


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
    | HelperUndeliverable
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


# --------------------------------------------------------------------------------- MCP tool inputs
# The arguments of the agent and manager tools (SPEC §5.1). Each field's `doc` becomes its description
# in `tools/list`; the JSON schemas are generated from these classes, so a field is named only here.
# No field names a sender: the socket is the identity.


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@attrs.frozen(kw_only=True)
class NoArgs:
    pass


@attrs.frozen(kw_only=True)
class SendArgs:
    to: str = attrs.field(metadata=_doc("an agent's name, 'manager', 'operator', or '*' to broadcast to every agent"))
    body: str = attrs.field(metadata=_doc("the message text"))


@attrs.frozen(kw_only=True)
class RecvArgs:
    wait_seconds: float = attrs.field(
        metadata=_doc("seconds to park for the first message if the inbox is empty (at most 180)"), default=0.0
    )
    max: int = attrs.field(metadata=_doc("most messages to take at once (capped at 32)"), default=1)


@attrs.frozen(kw_only=True)
class RecentArgs:
    limit: int = attrs.field(metadata=_doc("how many recent inbox rows to show (at most 500)"), default=20)


@attrs.frozen(kw_only=True)
class AskArgs:
    question: str = attrs.field(metadata=_doc("the question"))
    options: list[str] = attrs.field(metadata=_doc("choices to offer; empty for a free-text answer"), factory=list)
    multi: bool = attrs.field(metadata=_doc("whether several options may be chosen"), default=False)
    ttl_seconds: float | None = attrs.field(
        metadata=_doc("seconds until the question expires; null for never"), default=None
    )
    to: str | None = attrs.field(metadata=_doc("an agent to ask instead of the operator"), default=None)
    default: str | None = attrs.field(metadata=_doc("the answer used if the deadline passes"), default=None)


@attrs.frozen(kw_only=True)
class AnswerArgs:
    question_id: int = attrs.field(metadata=_doc("the id from the question_asked event"))
    answer: str | list[str] = attrs.field(metadata=_doc("the answer; a list of selections for a multi-choice question"))


@attrs.frozen(kw_only=True)
class SetStatusArgs:
    text: str = attrs.field(metadata=_doc("a short line shown on your dashboard card; empty clears it"))


@attrs.frozen(kw_only=True)
class AgentNameArgs:
    name: str = attrs.field(metadata=_doc("the agent's name"))


@attrs.frozen(kw_only=True)
class RequestSpawnArgs:
    name: str = attrs.field(metadata=_doc("the new agent's name"))
    description: str | None = attrs.field(metadata=_doc("why it is needed, for the operator"), default=None)


@attrs.frozen(kw_only=True)
class RequestApplyCommitArgs:
    agent: str = attrs.field(metadata=_doc("the agent whose config the commit changes"))
    commit_ref: str = attrs.field(metadata=_doc("the commit in the agent's config repo: a 7-40 character hex sha"))
    description: str | None = attrs.field(metadata=_doc("what the change does, for the operator"), default=None)


# ------------------------------------------------------------------------------ host.sock requests
# hyperhive's `HostRequest` (v1), one JSON object per line tagged `cmd` (SPEC §5.2). Unknown keys are
# ignored, as serde does, so hyperhive's own clients work unchanged.

HOST_SOCK_VERSION: Final = 1


@attrs.frozen
class Scope:
    """Which agents `start`/`stop` touch. Naming nothing is refused (hyperhive took it as everything)."""

    agent_names: list[str] = attrs.Factory(list)
    agents: bool = False


@attrs.frozen
class HostList:
    tag_value: ClassVar[str] = "list"


@attrs.frozen
class HostAgentStatus:
    tag_value: ClassVar[str] = "agent_status"


@attrs.frozen
class HostSubscribeAgentStatus:
    tag_value: ClassVar[str] = "subscribe_agent_status"


@attrs.frozen
class HostSetPaused:
    tag_value: ClassVar[str] = "set_paused"
    name: str
    paused: bool


@attrs.frozen
class HostStart:
    tag_value: ClassVar[str] = "start"
    scope: Scope


@attrs.frozen
class HostStop:
    tag_value: ClassVar[str] = "stop"
    scope: Scope
    graceful: bool = True


@attrs.frozen
class HostRestart:
    tag_value: ClassVar[str] = "restart"
    name: str


@attrs.frozen
class HostUrls:
    tag_value: ClassVar[str] = "urls"


@attrs.frozen
class HostRequestSpawn:
    tag_value: ClassVar[str] = "request_spawn"
    name: str
    description: str | None = None


@attrs.frozen
class HostKill:
    tag_value: ClassVar[str] = "kill"
    name: str


@attrs.frozen
class HostSpawn:
    tag_value: ClassVar[str] = "spawn"
    name: str


@attrs.frozen
class HostRebuild:
    tag_value: ClassVar[str] = "rebuild"
    name: str


@attrs.frozen
class HostDestroy:
    tag_value: ClassVar[str] = "destroy"
    name: str
    purge: bool = False


@attrs.frozen
class HostPurgeTombstone:
    tag_value: ClassVar[str] = "purge_tombstone"
    name: str


@attrs.frozen
class HostPending:
    """The approval queue; `status` defaults to pending."""

    tag_value: ClassVar[str] = "pending"
    status: ApprovalStatus | None = ApprovalStatus.PENDING


@attrs.frozen
class HostApprovals:
    """Every approval, or those with `status`."""

    tag_value: ClassVar[str] = "approvals"
    status: ApprovalStatus | None = None


@attrs.frozen
class HostApprove:
    tag_value: ClassVar[str] = "approve"
    id: int
    note: str | None = None


@attrs.frozen
class HostDeny:
    tag_value: ClassVar[str] = "deny"
    id: int
    note: str | None = None


@attrs.frozen
class HostQuestions:
    """Open questions (to the operator and between agents); `all` adds recently answered ones."""

    tag_value: ClassVar[str] = "questions"
    all: bool = False


@attrs.frozen
class HostAnswer:
    tag_value: ClassVar[str] = "answer"
    id: int
    answer: str | list[str]


@attrs.frozen
class HostCancelQuestion:
    tag_value: ClassVar[str] = "cancel_question"
    id: int


@attrs.frozen
class HostSend:
    tag_value: ClassVar[str] = "send"
    to: str
    body: str


@attrs.frozen
class HostBroadcast:
    tag_value: ClassVar[str] = "broadcast"
    body: str


@attrs.frozen
class HostTombstones:
    tag_value: ClassVar[str] = "tombstones"


HostRequest: TypeAlias = (
    HostList
    | HostAgentStatus
    | HostSubscribeAgentStatus
    | HostSetPaused
    | HostStart
    | HostStop
    | HostRestart
    | HostUrls
    | HostRequestSpawn
    | HostKill
    | HostSpawn
    | HostRebuild
    | HostDestroy
    | HostPurgeTombstone
    | HostPending
    | HostApprovals
    | HostApprove
    | HostDeny
    | HostQuestions
    | HostAnswer
    | HostCancelQuestion
    | HostSend
    | HostBroadcast
    | HostTombstones
)
HOST_REQUEST_TYPES: Final[tuple[type[Any], ...]] = HostRequest.__args__


@attrs.frozen
class Urls:
    """`urls` result: the host's name and the dashboard URL (`home`)."""

    domain: str | None
    home: str | None


def rfc3339(ts: float | None) -> str | None:
    """Unix seconds as hyperhive writes times on host.sock: RFC 3339 UTC, whole seconds, `Z`."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@attrs.frozen
class HostApproval:
    """An approval as host.sock carries it: hyperhive's v1 row, whose times are RFC 3339 strings.

    hyperhive's clients decode `requested_at` as a string, so a number fails their whole `pending`
    response. The stores and the dashboard keep unix seconds (`Approval`).
    """

    id: int
    agent: str
    kind: ApprovalKind
    status: ApprovalStatus
    requested_at: str
    commit_ref: str | None = None
    fetched_sha: str | None = None
    description: str | None = None
    diff: str | None = None
    note: str | None = None
    resolved_at: str | None = None
    requested_by: str | None = None

    @classmethod
    def of(cls, approval: Approval) -> HostApproval:
        return cls(
            id=approval.id,
            agent=approval.agent,
            kind=approval.kind,
            status=approval.status,
            requested_at=rfc3339(approval.requested_at) or "",
            commit_ref=approval.commit_ref,
            fetched_sha=approval.fetched_sha,
            description=approval.description,
            diff=approval.diff,
            note=approval.note,
            resolved_at=rfc3339(approval.resolved_at),
            requested_by=approval.requested_by,
        )


# ------------------------------------------------------------------------------------ the converter


_JSON_TYPE_NAMES: Final = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def json_type_name(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _strict(kind: type[Any], label: str) -> Any:
    """A structure hook that accepts exactly `kind`, where cattrs would otherwise coerce (`str(5)`)."""

    def hook(value: Any, _: type[Any]) -> Any:
        # bool is an int subclass; a JSON `true` is never a count or an id.
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {label}, got a boolean")
        if not isinstance(value, kind):
            raise TypeError(f"expected {label}, got {json_type_name(value)}")
        return value

    return hook


# sqlite's INTEGER (every id, count and limit here) is 64-bit; a larger JSON number is a bad request, not
# an OverflowError deep inside a query.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


def _structure_int(value: Any, _: type[Any]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {json_type_name(value)}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise TypeError("expected an integer that fits in 64 bits")
    return value


def _structure_float(value: Any, _: type[Any]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {json_type_name(value)}")
    if not math.isfinite(value):
        raise TypeError("expected a finite number")
    return float(value)


def _structure_text(value: Any, _: type[Any]) -> str:
    """A JSON string that is real Unicode: a lone surrogate (`"\\ud800"`) cannot be stored or sent on."""
    text: str = _strict(str, "a string")(value, str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text is not valid Unicode (a lone surrogate at offset {exc.start})") from None
    return text


def _strict_list_factory(kind: Any, conv: cattrs.BaseConverter) -> Any:
    """cattrs would turn any iterable into a list (`"abc"` becomes `["a", "b", "c"]`); demand a JSON array."""
    inner = list_structure_factory(kind, conv)

    def hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {json_type_name(value)}")
        return inner(value, type_)

    return hook


def _strict_attrs_factory(kind: Any, conv: cattrs.Converter) -> Any:
    """cattrs reads an attrs record from anything with `in` (a string, a list); demand a JSON object."""
    inner = make_dict_structure_fn(kind, conv)

    def hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {json_type_name(value)}")
        return inner(value, type_)

    return hook


def _structure_text_or_list(value: Any, _: Any) -> str | list[str]:
    """An answer: one string, or a list of selections (a multi-choice question)."""
    if isinstance(value, str):
        return _structure_text(value, str)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [_structure_text(v, str) for v in value]
    raise TypeError("expected a string or a list of strings")


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(str, _structure_text)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(bool, _strict(bool, "a boolean"))
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook_factory(is_sequence, _strict_list_factory)
    conv.register_structure_hook_factory(attrs.has, _strict_attrs_factory)
    conv.register_structure_hook_func(lambda t: t == (str | list[str]), _structure_text_or_list)
    # `from`/`to` are Python keywords; the wire names are hyperhive's.
    renames = {"sender": override(rename="from"), "recipient": override(rename="to")}
    for cls in (SentEvent, DeliveredEvent, Delivery, Message):
        fields = {a.name for a in attrs.fields(cls)}
        ov: dict[str, Any] = {k: v for k, v in renames.items() if k in fields}
        if cls in (SentEvent, DeliveredEvent):
            ov["id"] = override(omit_if_default=True)  # an event without an id reads as it always did
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, **ov))
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, **ov))
    configure_tagged_union(HelperEvent, conv, tag_generator=_tag_of, tag_name="event")
    configure_tagged_union(DashboardEvent, conv, tag_generator=_tag_of, tag_name="kind")
    configure_tagged_union(HostRequest, conv, tag_generator=_tag_of, tag_name="cmd")
    return conv


def _tag_of(cls: type[Any]) -> str:
    tag: str = cls.tag_value
    return tag


CONVERTER: Final = _make_converter()


def _format_leaf(exc: BaseException, _type: type | None) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, TypeError | ValueError) and str(exc):
        return str(exc)
    return format_exception(exc, _type)


def describe_error(exc: BaseException) -> str:
    """One line naming each bad field (`... @ $.field`), from cattrs' nested validation errors."""
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, format_exception=_format_leaf))
    if isinstance(exc, KeyError):
        return f"missing or unknown key {exc}"
    return str(exc) or type(exc).__name__


_UNION_NAMES: Final[dict[Any, str]] = {
    HelperEvent: "HelperEvent",
    DashboardEvent: "DashboardEvent",
    HostRequest: "host request",
}


def structure(data: Any, cls: type[T] | Any) -> T:
    """Decode plain data into `cls`; any mismatch is a `RecordError` with a readable reason."""
    try:
        result: T = cast(T, CONVERTER.structure(data, cls))
    except RecordError:
        raise
    except Exception as exc:
        name = _UNION_NAMES.get(cls) or getattr(cls, "__name__", "record")
        raise RecordError(f"invalid {name}: {describe_error(exc)}") from exc
    return result


def unstructure(record: Any) -> Any:
    """Plain data (dicts, lists, str, numbers) for a record, union members tagged."""
    return CONVERTER.unstructure(record)


def unstructure_helper(event: HelperEvent) -> dict[str, Any]:
    data: dict[str, Any] = CONVERTER.unstructure(event, HelperEvent)
    return data


def unstructure_event(event: DashboardEvent) -> dict[str, Any]:
    data: dict[str, Any] = CONVERTER.unstructure(event, DashboardEvent)
    return data


def to_json(record: Any, cls: Any = None) -> str:
    data = CONVERTER.unstructure(record, cls) if cls is not None else CONVERTER.unstructure(record)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def from_json(text: str | bytes, cls: type[T] | Any) -> T:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"not valid JSON: {exc}") from exc
    return cast(T, structure(data, cls))


def event_kind(event: DashboardEvent) -> str:
    return type(event).tag_value


def as_mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RecordError(f"expected a JSON object, got {type(value).__name__}")
    return value


@attrs.frozen
class Snapshot:
    """Everything the dashboard shows, with the `seq` read before any of it was gathered."""

    seq: int
    epoch: str
    agents: list[AgentStatus]
    approvals: list[Approval]
    questions: list[Question]
    messages: list[Message]
    tombstones: list[str] = attrs.field(factory=list)
    # Federation (docs/FEDERATION.md): agents on other hives, and this hive's link; empty when off.
    remote_agents: list[RemoteAgent] = attrs.field(factory=list)
    link: LinkState | None = None


# ------------------------------------------------------------------------- dashboard stream wire
# The operator's websocket (SPEC §7). Actions come in tagged by `op`; frames go out tagged by `type`.
# hyperhive's dashboard posts forms and streams SSE; here one socket carries both directions, so every
# action names a client-chosen `req` that its `result` frame echoes.

# A client-chosen request id: a JSON number or string (or absent). Anything else is refused.
RequestId: TypeAlias = int | str | None
# A multi-choice answer may come as the list of selections; the coordinator joins them with ", ".
AnswerText: TypeAlias = str | list[str]


@attrs.frozen
class ApproveAction:
    tag_value: ClassVar[str] = "approve"
    id: int
    note: str | None = None
    req: RequestId = None


@attrs.frozen
class DenyAction:
    tag_value: ClassVar[str] = "deny"
    id: int
    note: str | None = None
    req: RequestId = None


@attrs.frozen
class AnswerAction:
    tag_value: ClassVar[str] = "answer"
    id: int
    answer: AnswerText
    req: RequestId = None


@attrs.frozen
class CancelQuestionAction:
    tag_value: ClassVar[str] = "cancel_question"
    id: int
    req: RequestId = None


@attrs.frozen
class SendAction:
    tag_value: ClassVar[str] = "send"
    to: str
    body: str
    req: RequestId = None


@attrs.frozen
class StartAction:
    tag_value: ClassVar[str] = "start"
    name: str
    req: RequestId = None


@attrs.frozen
class StopAction:
    tag_value: ClassVar[str] = "stop"
    name: str
    graceful: bool = True
    req: RequestId = None


@attrs.frozen
class RestartAction:
    tag_value: ClassVar[str] = "restart"
    name: str
    req: RequestId = None


@attrs.frozen
class RebuildAction:
    tag_value: ClassVar[str] = "rebuild"
    name: str
    req: RequestId = None


@attrs.frozen
class DestroyAction:
    tag_value: ClassVar[str] = "destroy"
    name: str
    purge: bool = False
    req: RequestId = None


@attrs.frozen
class SpawnAction:
    tag_value: ClassVar[str] = "spawn"
    name: str
    parent: str | None = None
    req: RequestId = None


@attrs.frozen
class CancelTransientAction:
    tag_value: ClassVar[str] = "cancel_transient"
    name: str
    req: RequestId = None


DashboardAction: TypeAlias = (
    ApproveAction
    | DenyAction
    | AnswerAction
    | CancelQuestionAction
    | SendAction
    | StartAction
    | StopAction
    | RestartAction
    | RebuildAction
    | DestroyAction
    | SpawnAction
    | CancelTransientAction
)
DASHBOARD_ACTION_TYPES: Final[tuple[type[Any], ...]] = DashboardAction.__args__
DASHBOARD_OPS: Final[tuple[str, ...]] = tuple(t.tag_value for t in DASHBOARD_ACTION_TYPES)


@attrs.frozen
class ResumedFrame:
    """Sent instead of a snapshot when `?since=` could be honoured: events after `seq` follow."""

    seq: int
    epoch: str


@attrs.frozen
class EventFrame:
    event: DashboardEvent


@attrs.frozen
class ResultFrame:
    """The answer to one action; `result` is the action's plain-data outcome when it has one."""

    req: RequestId
    ok: bool
    error: str | None = None
    result: Any = None


# A snapshot frame is the `Snapshot` itself, flat, tagged `"type": "snapshot"` (SPEC §7).
StreamFrame: TypeAlias = Snapshot | ResumedFrame | EventFrame | ResultFrame
_FRAME_TAGS: Final[dict[type[Any], str]] = {
    Snapshot: "snapshot",
    ResumedFrame: "resumed",
    EventFrame: "event",
    ResultFrame: "result",
}
FRAME_TYPES: Final[tuple[str, ...]] = tuple(_FRAME_TAGS.values())


def _structure_request_id(value: Any, _: Any) -> RequestId:
    if value is None or (isinstance(value, int | str) and not isinstance(value, bool)):
        return value
    raise TypeError(f"expected a number or a string, got {type(value).__name__}")


def _structure_answer(value: Any, _: Any) -> AnswerText:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError("expected a string or a list of strings")


def _configure_stream_wire(conv: cattrs.Converter) -> None:
    conv.register_structure_hook(RequestId, _structure_request_id)
    conv.register_structure_hook(AnswerText, _structure_answer)
    configure_tagged_union(DashboardAction, conv, tag_generator=_tag_of, tag_name="op")
    configure_tagged_union(StreamFrame, conv, tag_generator=_FRAME_TAGS.__getitem__, tag_name="type")


_configure_stream_wire(CONVERTER)


def unstructure_frame(frame: StreamFrame) -> dict[str, Any]:
    data: dict[str, Any] = CONVERTER.unstructure(frame, StreamFrame)
    return data
