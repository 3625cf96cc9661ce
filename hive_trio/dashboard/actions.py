"""What each dashboard action does: a call on the coordinator, as the operator, and its plain-data result.

This is the only place the stream's ops meet the hive. It goes through the coordinator (and its
lifecycle seam) for everything and must never touch the database, a path or a socket itself.
Refusals surface as `HiveError`s whose messages the operator reads on the page.
"""

from __future__ import annotations

from typing import Any

from hive_trio.core.agent_logs import read_agent_log
from hive_trio.core.coordinator import Coordinator
from hive_trio.errors import NotFound
from hive_trio.records import (
    OPERATOR,
    AnswerAction,
    ApproveAction,
    CancelQuestionAction,
    CancelTransientAction,
    DashboardAction,
    DenyAction,
    DestroyAction,
    LogTailAction,
    RebuildAction,
    RestartAction,
    SendAction,
    SetPausedAction,
    SpawnAction,
    StartAction,
    StopAction,
    unstructure,
)
from hive_trio.records.harness import (
    AllowPermissionAction,
    DenyPermissionAction,
    InterruptAction,
    PermissionDecision,
    RemindersAction,
    TranscriptAction,
)
from hive_trio.rules.names import validate_agent_name


async def perform(coord: Coordinator, action: DashboardAction) -> Any:
    """Run `action` for the operator; returns what the result frame carries, or raises `HiveError`."""
    match action:
        case ApproveAction(id=approval_id, note=note):
            return unstructure(await coord.ops.approve(approval_id, note=_clean(note)))
        case DenyAction(id=approval_id, note=note):
            return unstructure(await coord.ops.deny(approval_id, note=_clean(note)))
        case AnswerAction(id=question_id, answer=answer):
            return unstructure(await coord.answer_question(question_id, answer, answerer=OPERATOR))
        case CancelQuestionAction(id=question_id):
            return unstructure(await coord.cancel_question(question_id, by=OPERATOR))
        case SendAction(to=to, body=body):
            messages = await coord.send(OPERATOR, to, body)
            return {"ids": [m.id for m in messages]}
        case StartAction(name=name):
            await coord.ops.start(name)
        case StopAction(name=name, graceful=graceful):
            await coord.ops.stop(name, graceful=graceful)
        case RestartAction(name=name):
            await coord.ops.restart(name)
        case RebuildAction(name=name):
            await coord.ops.rebuild(name)
        case DestroyAction(name=name, purge=purge):
            await coord.ops.destroy(name, purge=purge)
        case SpawnAction(name=name, parent=parent):
            return unstructure(await coord.ops.spawn(name, parent=parent))
        case CancelTransientAction(name=name):
            if not coord.cancel_transient(name):
                raise NotFound(f"nothing is in flight for {name!r}")
        case AllowPermissionAction(id=request_id, always=always):
            allowed = PermissionDecision.ALLOW
            return unstructure(await coord.reports.decide_permission(request_id, allowed, by=OPERATOR, always=always))
        case DenyPermissionAction(id=request_id):
            denied = PermissionDecision.DENY
            return unstructure(await coord.reports.decide_permission(request_id, denied, by=OPERATOR))
        case InterruptAction(name=name):
            validate_agent_name(name)
            return await coord.reports.interrupt(name)
        case SetPausedAction(name=name, paused=paused):
            record = await coord.set_paused(name, paused)
            return {"name": record.name, "paused": record.paused}
        case LogTailAction(name=name, offset=offset, max_bytes=max_bytes):
            chunk = await read_agent_log(coord, name, offset=offset, max_bytes=max_bytes)
            return {"name": name, "text": chunk.text, "offset": chunk.offset, "rotated": chunk.rotated}
        case TranscriptAction(name=name, limit=limit, since=since):
            await coord.require_agent(name)
            entries = await coord.reports.transcript(name, limit=limit, since=since)
            return {"name": name, "entries": unstructure(entries)}
        case RemindersAction(name=name):
            await coord.require_agent(name)
            return {"name": name, "reminders": unstructure(await coord.reports.pending_reminders(name))}
    return None


def _clean(note: str | None) -> str | None:
    """An empty note box means no note, not an empty one on the audit trail."""
    if note is None or not note.strip():
        return None
    return note.strip()


__all__ = ["perform"]
