"""Records of issue 10's daemon side: what a harness reports, and what the daemon keeps and shows of it.

The harness channel's tool arguments (the `harness` role, docs/AGENTS.md), the `remind` agent tool,
transcript entries, permission requests, reminders, usage and budgets, and the new dashboard events,
HelperEvents, host.sock verbs and dashboard actions. Re-exported by `hive_trio.records`, whose
unions include the new members, so the one converter encodes them. Like the rest of `records`, it
imports only sibling record modules and holds shape only, never behaviour.
"""

from __future__ import annotations

import enum
from typing import Any, Final, TypeAlias

import attrs

from hive_trio.records.bases import AboutAgent, AgentNote, ById, ByIdAction, Named, NamedAction, RequestId, doc
from hive_trio.records.tagged import Tagged

# hyperhive-style sentinel deciders of a permission request that no person resolved.
TTL_DECIDER: Final = "ttl"
RULE_DECIDER: Final = "rule"
WITHDRAWN_DECIDER: Final = "harness"


class TurnOutcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"
    AUTH_FAILED = "auth_failed"


class TurnEventKind(enum.Enum):
    TEXT = "text"
    TOOL_USE = "tool_use"
    TOOL_RESULT = "tool_result"
    ERROR = "error"
    THINKING = "thinking"


class TranscriptKind(enum.Enum):
    """One transcript row: a turn's start and end, and each event of its stream between them."""

    TURN_STARTED = "turn_started"
    TEXT = "text"
    TOOL_USE = "tool_use"
    TOOL_RESULT = "tool_result"
    ERROR = "error"
    THINKING = "thinking"
    TURN_FINISHED = "turn_finished"


class PermissionDecision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"


# ------------------------------------------------------------------------------ harness tool inputs
# No field names an agent: the channel is the identity, as a socket is for the agent tools.


@attrs.frozen(kw_only=True)
class TurnStartedArgs:
    turn_id: str = attrs.field(metadata=doc("the harness's id for this turn"))
    message_ids: list[int] = attrs.field(metadata=doc("ids of the messages the turn handles"), factory=list)


@attrs.frozen(kw_only=True)
class TurnEventArgs:
    turn_id: str = attrs.field(metadata=doc("the turn this event belongs to"))
    kind: TurnEventKind = attrs.field(metadata=doc("text, tool_use, tool_result, error or thinking"))
    text: str | None = attrs.field(metadata=doc("the text (truncated when long)"), default=None)
    tool: str | None = attrs.field(metadata=doc("the tool used, for tool_use and tool_result"), default=None)
    input: Any = attrs.field(metadata=doc("the tool's input, for tool_use"), default=None)
    is_error: bool = attrs.field(metadata=doc("whether a tool_result is an error"), default=False)


@attrs.frozen(kw_only=True)
class TurnFinishedArgs:
    turn_id: str = attrs.field(metadata=doc("the turn that ended"))
    outcome: TurnOutcome = attrs.field(metadata=doc("ok, failed, interrupted, timeout or auth_failed"))
    error: str | None = attrs.field(metadata=doc("why it failed, for a person"), default=None)
    model: str | None = attrs.field(metadata=doc("the model the runtime really used"), default=None)
    input_tokens: int = attrs.field(metadata=doc("input tokens of the turn"), default=0)
    output_tokens: int = attrs.field(metadata=doc("output tokens of the turn"), default=0)
    cache_read_tokens: int = attrs.field(metadata=doc("cache-read input tokens"), default=0)
    cache_write_tokens: int = attrs.field(metadata=doc("cache-write input tokens"), default=0)
    cost_usd: float | None = attrs.field(metadata=doc("the turn's cost, where the runtime reports it"), default=None)


@attrs.frozen(kw_only=True)
class ReportStateArgs:
    active_model: str | None = attrs.field(metadata=doc("the model in use; null leaves it"), default=None)
    status_text: str | None = attrs.field(
        metadata=doc("the live status line; null leaves it, '' clears it"), default=None
    )


@attrs.frozen(kw_only=True)
class RequestPermissionArgs:
    tool: str = attrs.field(metadata=doc("the tool the model wants to use"))
    input: Any = attrs.field(metadata=doc("the tool's input, shown to the operator"), default=None)
    ttl_seconds: float | None = attrs.field(
        metadata=doc("seconds until the request is denied by default; null for the configured default"), default=None
    )


@attrs.frozen(kw_only=True)
class WaitControlArgs:
    wait_seconds: float = attrs.field(metadata=doc("seconds to wait for a change (at most 180)"), default=0.0)


@attrs.frozen(kw_only=True)
class RemindArgs:
    body: str = attrs.field(metadata=doc("the text to receive later, from 'system'"))
    delay_seconds: float | None = attrs.field(metadata=doc("seconds from now; or give `at`"), default=None)
    at: float | str | None = attrs.field(
        metadata=doc("when: unix seconds or an RFC 3339 time (e.g. 2026-12-01T09:00:00Z); or give delay_seconds"),
        default=None,
    )


# ---------------------------------------------------------------------------------------- rows


@attrs.frozen
class TranscriptEntry:
    """One row of an agent's transcript (table `transcript`), in the order the harness reported it."""

    id: int
    agent: str
    turn_id: str
    kind: TranscriptKind
    at: float
    text: str | None = None
    tool: str | None = None
    # The tool input as (size-capped) JSON text: kept verbatim, never re-parsed by the daemon.
    input_json: str | None = None
    is_error: bool = False
    outcome: TurnOutcome | None = None
    message_ids: list[int] = attrs.field(factory=list)
    model: str | None = None
    tokens: int = 0
    cost_usd: float | None = None


@attrs.frozen
class PermissionRequest:
    """A tool use waiting for the operator (table `permissions`), kept as an audit trail."""

    id: int
    agent: str
    tool: str
    input_json: str
    requested_at: float
    deadline_at: float
    decision: PermissionDecision | None = None
    # Who decided: 'operator', 'ttl' (the deadline passed), 'rule' (an always-allow), 'harness' (it left).
    decided_by: str | None = None
    always: bool = False
    decided_at: float | None = None
    reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.decision is None


@attrs.frozen
class Reminder:
    """A message an agent scheduled to itself (table `reminders`); `delivered_at` once it went out."""

    id: int
    agent: str
    body: str
    due_at: float
    created_at: float
    delivered_at: float | None = None
    message_id: int | None = None


@attrs.frozen
class AgentUsage:
    """Tokens and cost of an agent: today (UTC) and over all time, with today's limits if any."""

    today_tokens: int = 0
    today_cost_usd: float = 0.0
    total_tokens: int = 0
    total_cost_usd: float = 0.0
    turns: int = 0
    daily_tokens_limit: int | None = None
    daily_usd_limit: float | None = None

    @property
    def budget_exceeded(self) -> bool:
        over_tokens = self.daily_tokens_limit is not None and self.today_tokens >= self.daily_tokens_limit
        over_usd = self.daily_usd_limit is not None and self.today_cost_usd >= self.daily_usd_limit
        return over_tokens or over_usd


@attrs.frozen
class Budget:
    """An agent's daily limits (table `budgets`); None means unlimited (or the configured default)."""

    agent: str
    daily_tokens: int | None = None
    daily_usd: float | None = None


# ------------------------------------------------------------------------------------ HelperEvent


class HelperNeedsLogin(AboutAgent, tag="needs_login"): ...


class HelperLoggedIn(AboutAgent, tag="logged_in"): ...


class HelperTurnFailed(AgentNote, tag="turn_failed"): ...


class HelperBudgetExceeded(AboutAgent, tag="budget_exceeded"): ...


# --------------------------------------------------------------------------------- DashboardEvent


@attrs.frozen
class TurnStartedEvent(Tagged, tag="turn_started"):
    agent: str
    turn_id: str
    message_ids: list[int]
    at: float
    seq: int = 0


@attrs.frozen
class TurnEventEvent(Tagged, tag="turn_event"):
    agent: str
    turn_id: str
    # Not `kind`: that is the union's tag (as `approval_kind` and `transient_kind` are).
    event_kind: TurnEventKind
    text: str | None
    tool: str | None
    at: float
    is_error: bool = False
    seq: int = 0


@attrs.frozen
class TurnFinishedEvent(Tagged, tag="turn_finished"):
    agent: str
    turn_id: str
    outcome: TurnOutcome
    error: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None
    at: float
    budget_exceeded: bool = False
    seq: int = 0


@attrs.frozen
class PermissionAddedEvent(Tagged, tag="permission_added"):
    id: int
    agent: str
    tool: str
    input_json: str
    requested_at: float
    deadline_at: float
    seq: int = 0


@attrs.frozen
class PermissionResolvedEvent(Tagged, tag="permission_resolved"):
    id: int
    agent: str
    tool: str
    decision: PermissionDecision
    decided_by: str
    always: bool
    decided_at: float
    seq: int = 0


# ------------------------------------------------------------------------------ host.sock requests


@attrs.frozen
class HostTranscript(Tagged, tag="transcript"):
    """An agent's transcript, oldest first: the last `limit` entries, or those after entry id `since`."""

    name: str
    limit: int = 100
    since: int | None = None


@attrs.frozen
class HostPermissions(Tagged, tag="permissions"):
    """Open permission requests; `all` adds the recently decided ones."""

    all: bool = False


@attrs.frozen
class HostAllowPermission(Tagged, tag="allow_permission"):
    # Not `allow`/`deny` alone: `deny` is already an approval's verb.
    id: int
    always: bool = False


class HostDenyPermission(ById, tag="deny_permission"): ...


class HostInterrupt(Named, tag="interrupt"): ...


@attrs.frozen
class HostSetBudget(Tagged, tag="set_budget"):
    """Set (or with nulls, clear) an agent's daily limits."""

    name: str
    daily_tokens: int | None = None
    daily_usd: float | None = None


class HostReminders(Named, tag="reminders"):
    """An agent's pending reminders."""


# The verbs above, as one union (a member of `HostRequest`) and the tuple to test a request against.
HarnessHostRequest: TypeAlias = (
    HostTranscript
    | HostPermissions
    | HostAllowPermission
    | HostDenyPermission
    | HostInterrupt
    | HostSetBudget
    | HostReminders
)
HARNESS_HOST_REQUEST_TYPES: Final[tuple[type[Any], ...]] = HarnessHostRequest.__args__


# ------------------------------------------------------------------------------ dashboard actions


@attrs.frozen
class AllowPermissionAction(Tagged, tag="allow_permission"):
    id: int
    always: bool = False
    req: RequestId = None


class DenyPermissionAction(ByIdAction, tag="deny_permission"): ...


class InterruptAction(NamedAction, tag="interrupt"): ...


@attrs.frozen
class TranscriptAction(Tagged, tag="transcript"):
    """An agent's transcript for its view, as host.sock `transcript`: the last `limit` entries, or after `since`."""

    name: str
    limit: int = 200
    since: int | None = None
    req: RequestId = None


class RemindersAction(NamedAction, tag="reminders"):
    """An agent's pending reminders for its view, as host.sock `reminders`."""


HARNESS_HELPER_EVENTS: Final = (HelperNeedsLogin, HelperLoggedIn, HelperTurnFailed, HelperBudgetExceeded)
