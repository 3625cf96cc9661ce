"""host.sock verbs of issue 10's daemon side: transcripts, permission requests, interrupts, budgets, reminders.

Served on the same wire as the rest of host.sock (SPEC §5.2: new verbs and new optional fields are free
for hyperhive's clients). Each verb asks the coordinator's `reports` section, as the operator; it never
touches the database or builds a path itself.
"""

from __future__ import annotations

from typing import Any

from hive_trio.core.coordinator import Coordinator
from hive_trio.records import OPERATOR, unstructure
from hive_trio.records.harness import (
    HarnessHostRequest,
    HostAllowPermission,
    HostDenyPermission,
    HostInterrupt,
    HostPermissions,
    HostReminders,
    HostSetBudget,
    HostTranscript,
    PermissionDecision,
)


async def run_harness_verb(coord: Coordinator, request: HarnessHostRequest) -> dict[str, Any]:
    """The response fields of one of these verbs; a refusal is a `HiveError` with its reason."""
    reports = coord.reports
    match request:
        case HostTranscript(name=name, limit=limit, since=since):
            await coord.require_agent(name)
            return {"name": name, "entries": unstructure(await reports.transcript(name, limit=limit, since=since))}
        case HostPermissions(all=everything):
            return {"permissions": unstructure(await reports.list_permissions(include_decided=everything))}
        case HostAllowPermission(id=request_id, always=always):
            decided = await reports.decide_permission(request_id, PermissionDecision.ALLOW, by=OPERATOR, always=always)
            return {"permission": unstructure(decided)}
        case HostDenyPermission(id=request_id):
            decided = await reports.decide_permission(request_id, PermissionDecision.DENY, by=OPERATOR)
            return {"permission": unstructure(decided)}
        case HostInterrupt(name=name):
            return await reports.interrupt(name)
        case HostSetBudget(name=name, daily_tokens=tokens, daily_usd=usd):
            budget = await reports.set_budget(name, daily_tokens=tokens, daily_usd=usd)
            return {"budget": unstructure(budget), "usage": unstructure(await reports.usage(name))}
        case HostReminders(name=name):
            await coord.require_agent(name)
            return {"name": name, "reminders": unstructure(await reports.pending_reminders(name))}


__all__ = ["run_harness_verb"]
