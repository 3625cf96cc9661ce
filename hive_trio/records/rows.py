"""Row shapes: what the stores write and read, the names every layer shares, and the dashboard snapshot.

Imports nothing of ours. It must never grow behaviour beyond shape (no I/O, no encoding; see `convert`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from hive_trio.records.federation import LinkState, RemoteAgent
from hive_trio.records.harness import AgentUsage, PermissionRequest

SYSTEM_SENDER: Final = "system"
MANAGER_AGENT: Final = "manager"
OPERATOR: Final = "operator"
BROADCAST: Final = "*"
# hyperhive's watchdog sentinel for a question nobody answered in time, and its answerer.
EXPIRED_ANSWER: Final = "[expired]"
CANCELLED_ANSWER: Final = "[cancelled]"
TTL_ANSWERER: Final = "ttl"


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


@attrs.frozen(kw_only=True)
class ApprovalDraft:
    """An approval as proposed, before the store gives it an id and a time (passed down whole, as a question is)."""

    agent: str
    kind: ApprovalKind
    commit_ref: str | None = None
    description: str | None = None
    requested_by: str | None = None


@attrs.frozen(kw_only=True)
class ApprovalVerdict:
    """How a pending approval is resolved: `tag` goes into the manager's notice, `roster_update` changes the
    agent's row in the same transaction (an approved deploy records its `deployed_sha`)."""

    status: ApprovalStatus
    note: str | None = None
    tag: str | None = None
    roster_update: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class QuestionDraft:
    """A question as asked, before the store gives it an id, a time and a deadline: passed down whole,
    so the coordinator, the store and its transaction do not each spell out the same keywords."""

    asker: str
    question: str
    options: Sequence[str] = ()
    multi: bool = False
    default_answer: str | None = None
    ttl_seconds: float | None = None
    target: str | None = None


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
    # Issue 10's daemon side: what the harness reported (records/harness.py).
    usage: AgentUsage = attrs.field(factory=AgentUsage)
    budget_exceeded: bool = False
    pending_reminders: int = 0


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
    # Open permission requests (records/harness.py), oldest first.
    permissions: list[PermissionRequest] = attrs.field(factory=list)
    # Per part ("approvals", "questions"): how many were left out to keep the snapshot under its budget
    # (rules.snapshot_budget); the full lists are host.sock's `approvals` and `questions`.
    omitted: dict[str, int] = attrs.field(factory=dict)
    # Federation (docs/FEDERATION.md): agents on other hives, and this hive's link; empty when off.
    remote_agents: list[RemoteAgent] = attrs.field(factory=list)
    link: LinkState | None = None
