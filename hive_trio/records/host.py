"""host.sock shapes: hyperhive's `HostRequest` family, its `Scope`, and the rows only host.sock carries.

Imports only sibling record modules. It must never grow behaviour beyond shape (`rfc3339` and
`HostApproval.of` only restate a value in hyperhive's wire form).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Final, TypeAlias

import attrs

from hive_trio.records.rows import Approval, ApprovalKind, ApprovalStatus

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


# Operator verbs beyond hyperhive's v1 (issue 11): what the CLI needs to work from the runtime dir alone.
@attrs.frozen
class HostInbox:
    """The newest messages sent to the operator, oldest first."""

    tag_value: ClassVar[str] = "inbox"
    limit: int = 20


@attrs.frozen
class HostReply:
    """Answer message `id` (one sent to the operator): a message from the operator to its sender."""

    tag_value: ClassVar[str] = "reply"
    id: int
    body: str


@attrs.frozen
class HostDashboardUrl:
    """The running dashboard's real URL (the port it bound), with its token."""

    tag_value: ClassVar[str] = "dashboard_url"


@attrs.frozen
class HostLogTail:
    """A piece of an agent's (or the manager's) log: the last `max_bytes`, or what follows `offset`."""

    tag_value: ClassVar[str] = "log_tail"
    name: str
    offset: int | None = None
    max_bytes: int = 65536


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
    | HostInbox
    | HostReply
    | HostDashboardUrl
    | HostLogTail
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
