"""MCP tool-argument records: the one place a tool's argument is named, typed and described.

Imports only `records.bases` (for `doc`). It must never grow behaviour beyond shape.
"""

from __future__ import annotations

import attrs

from hive_trio.records.bases import doc

# --------------------------------------------------------------------------------- MCP tool inputs
# The arguments of the agent and manager tools (SPEC §5.1). Each field's `doc` becomes its description
# in `tools/list`; the JSON schemas are generated from these classes, so a field is named only here.
# No field names a sender: the socket is the identity.


@attrs.frozen(kw_only=True)
class NoArgs:
    pass


@attrs.frozen(kw_only=True)
class SendArgs:
    to: str = attrs.field(metadata=doc("an agent's name, 'manager', 'operator', or '*' to broadcast to every agent"))
    body: str = attrs.field(metadata=doc("the message text"))


@attrs.frozen(kw_only=True)
class RecvArgs:
    wait_seconds: float = attrs.field(
        metadata=doc("seconds to park for the first message if the inbox is empty (at most 180)"), default=0.0
    )
    max: int = attrs.field(metadata=doc("most messages to take at once (capped at 32)"), default=1)


@attrs.frozen(kw_only=True)
class RecentArgs:
    limit: int = attrs.field(metadata=doc("how many recent inbox rows to show (at most 500)"), default=20)


@attrs.frozen(kw_only=True)
class AskArgs:
    question: str = attrs.field(metadata=doc("the question"))
    options: list[str] = attrs.field(metadata=doc("choices to offer; empty for a free-text answer"), factory=list)
    multi: bool = attrs.field(metadata=doc("whether several options may be chosen"), default=False)
    ttl_seconds: float | None = attrs.field(
        metadata=doc("seconds until the question expires; null for never"), default=None
    )
    to: str | None = attrs.field(metadata=doc("an agent to ask instead of the operator"), default=None)
    default: str | None = attrs.field(metadata=doc("the answer used if the deadline passes"), default=None)


@attrs.frozen(kw_only=True)
class AnswerArgs:
    question_id: int = attrs.field(metadata=doc("the id from the question_asked event"))
    answer: str | list[str] = attrs.field(metadata=doc("the answer; a list of selections for a multi-choice question"))


@attrs.frozen(kw_only=True)
class SetStatusArgs:
    text: str = attrs.field(metadata=doc("a short line shown on your dashboard card; empty clears it"))


@attrs.frozen(kw_only=True)
class AgentNameArgs:
    name: str = attrs.field(metadata=doc("the agent's name"))


@attrs.frozen(kw_only=True)
class RequestSpawnArgs:
    name: str = attrs.field(metadata=doc("the new agent's name"))
    description: str | None = attrs.field(metadata=doc("why it is needed, for the operator"), default=None)


@attrs.frozen(kw_only=True)
class RequestApplyCommitArgs:
    agent: str = attrs.field(metadata=doc("the agent whose config the commit changes"))
    commit_ref: str = attrs.field(metadata=doc("the commit in the agent's config repo: a 7-40 character hex sha"))
    description: str | None = attrs.field(metadata=doc("what the change does, for the operator"), default=None)
