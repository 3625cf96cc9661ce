"""The dashboard stream wire: actions the operator's page sends, and the frames it receives.

Imports only sibling record modules. It must never grow behaviour beyond shape.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import attrs

from hive_trio.records.bases import ByIdAction, NamedAction
from hive_trio.records.bases import RequestId as RequestId
from hive_trio.records.events import DashboardEvent
from hive_trio.records.harness import (
    AllowPermissionAction,
    DenyPermissionAction,
    InterruptAction,
    RemindersAction,
    TranscriptAction,
)
from hive_trio.records.rows import Snapshot
from hive_trio.records.tagged import Tagged

# ------------------------------------------------------------------------- dashboard stream wire
# The operator's websocket (SPEC §7). Actions come in tagged by `op`; frames go out tagged by `type`.
# hyperhive's dashboard posts forms and streams SSE; here one socket carries both directions, so every
# action names a client-chosen `req` that its `result` frame echoes.

# Every action names a client-chosen request id (`RequestId`, from `bases`); any other type is refused.
# A multi-choice answer may come as the list of selections; the coordinator joins them with ", ".
AnswerText: TypeAlias = str | list[str]


@attrs.frozen
class _VerdictAction(Tagged):
    """A decision on one approval, with an optional note."""

    id: int
    note: str | None = None
    req: RequestId = None


class ApproveAction(_VerdictAction, tag="approve"): ...


class DenyAction(_VerdictAction, tag="deny"): ...


@attrs.frozen
class AnswerAction(Tagged, tag="answer"):
    id: int
    answer: AnswerText
    req: RequestId = None


class CancelQuestionAction(ByIdAction, tag="cancel_question"): ...


@attrs.frozen
class SendAction(Tagged, tag="send"):
    to: str
    body: str
    req: RequestId = None


class StartAction(NamedAction, tag="start"): ...


class RestartAction(NamedAction, tag="restart"): ...


class RebuildAction(NamedAction, tag="rebuild"): ...


class CancelTransientAction(NamedAction, tag="cancel_transient"): ...


@attrs.frozen
class StopAction(Tagged, tag="stop"):
    name: str
    graceful: bool = True
    req: RequestId = None


@attrs.frozen
class DestroyAction(Tagged, tag="destroy"):
    name: str
    purge: bool = False
    req: RequestId = None


@attrs.frozen
class SpawnAction(Tagged, tag="spawn"):
    name: str
    parent: str | None = None
    req: RequestId = None


@attrs.frozen
class SetPausedAction(Tagged, tag="set_paused"):
    """Pause (hold its inbox) or resume an agent, from its view."""

    name: str
    paused: bool
    req: RequestId = None


@attrs.frozen
class LogTailAction(Tagged, tag="log_tail"):
    """A piece of an agent's (or the manager's) output log, for its view: as host.sock `log_tail`."""

    name: str
    offset: int | None = None
    max_bytes: int = 16384
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
    | AllowPermissionAction
    | DenyPermissionAction
    | InterruptAction
    | SetPausedAction
    | LogTailAction
    | TranscriptAction
    | RemindersAction
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
FRAME_TAGS: Final[dict[type[Any], str]] = {
    Snapshot: "snapshot",
    ResumedFrame: "resumed",
    EventFrame: "event",
    ResultFrame: "result",
}
FRAME_TYPES: Final[tuple[str, ...]] = tuple(FRAME_TAGS.values())
