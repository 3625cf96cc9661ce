"""host.sock shapes: hyperhive's `HostRequest` family, its `Scope`, and the rows only host.sock carries.

Imports only sibling record modules. It must never grow behaviour beyond shape (`rfc3339` and
`HostApproval.of` only restate a value in hyperhive's wire form).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

import attrs

from hive_trio.records.bases import ById, Named
from hive_trio.records.carry import carried
from hive_trio.records.harness import HarnessHostRequest
from hive_trio.records.rows import Approval, ApprovalKind, ApprovalStatus
from hive_trio.records.tagged import Tagged

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
class _Bare(Tagged):
    """A verb with no arguments."""


class HostList(_Bare, tag="list"): ...


class HostAgentStatus(_Bare, tag="agent_status"): ...


class HostSubscribeAgentStatus(_Bare, tag="subscribe_agent_status"): ...


class HostUrls(_Bare, tag="urls"): ...


class HostTombstones(_Bare, tag="tombstones"): ...


@attrs.frozen
class HostSetPaused(Tagged, tag="set_paused"):
    name: str
    paused: bool


@attrs.frozen
class HostStart(Tagged, tag="start"):
    scope: Scope


@attrs.frozen
class HostStop(Tagged, tag="stop"):
    scope: Scope
    graceful: bool = True


class HostRestart(Named, tag="restart"): ...


class HostKill(Named, tag="kill"): ...


class HostSpawn(Named, tag="spawn"): ...


class HostRebuild(Named, tag="rebuild"): ...


class HostPurgeTombstone(Named, tag="purge_tombstone"): ...


@attrs.frozen
class HostRequestSpawn(Tagged, tag="request_spawn"):
    name: str
    description: str | None = None


@attrs.frozen
class HostDestroy(Tagged, tag="destroy"):
    name: str
    purge: bool = False


@attrs.frozen
class HostPending(Tagged, tag="pending"):
    """The approval queue; `status` defaults to pending."""

    status: ApprovalStatus | None = ApprovalStatus.PENDING


@attrs.frozen
class HostApprovals(Tagged, tag="approvals"):
    """Every approval, or those with `status`."""

    status: ApprovalStatus | None = None


@attrs.frozen
class _Verdict(Tagged):
    """A decision on one approval, with an optional note."""

    id: int
    note: str | None = None


class HostApprove(_Verdict, tag="approve"): ...


class HostDeny(_Verdict, tag="deny"): ...


@attrs.frozen
class HostQuestions(Tagged, tag="questions"):
    """Open questions (to the operator and between agents); `all` adds recently answered ones."""

    all: bool = False


@attrs.frozen
class HostAnswer(Tagged, tag="answer"):
    id: int
    answer: str | list[str]


class HostCancelQuestion(ById, tag="cancel_question"): ...


@attrs.frozen
class HostSend(Tagged, tag="send"):
    to: str
    body: str


@attrs.frozen
class HostBroadcast(Tagged, tag="broadcast"):
    body: str


# Operator verbs beyond hyperhive's v1 (issue 11): what the CLI needs to work from the runtime dir alone.
@attrs.frozen
class HostInbox(Tagged, tag="inbox"):
    """The newest messages sent to the operator, oldest first."""

    limit: int = 20


@attrs.frozen
class HostReply(Tagged, tag="reply"):
    """Answer message `id` (one sent to the operator): a message from the operator to its sender."""

    id: int
    body: str


@attrs.frozen
class HostDashboardUrl(Tagged, tag="dashboard_url"):
    """The running dashboard's real URL (the port it bound), with its token."""


@attrs.frozen
class HostLogTail(Tagged, tag="log_tail"):
    """A piece of an agent's (or the manager's) log: the last `max_bytes`, or what follows `offset`."""

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
    | HarnessHostRequest
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
        return carried(
            cls, approval, requested_at=rfc3339(approval.requested_at) or "", resolved_at=rfc3339(approval.resolved_at)
        )
