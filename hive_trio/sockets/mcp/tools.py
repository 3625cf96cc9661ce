"""The MCP tools an agent (or the manager) has: the catalogue, its JSON schemas, and what each tool asks of
the coordinator (SPEC §5.1).

Names and arguments follow hyperhive's agent and manager sockets. The caller's name is fixed when the
`Toolbox` is made (the socket is the identity), so no argument can claim to be someone else: a `from`
is refused with a reason, never obeyed. Results are plain JSON data encoded by the one converter. This
module knows nothing of sockets or JSON-RPC; `agent_socket` carries it over MCP.
"""

from __future__ import annotations

import enum
import functools
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import attrs
import mcp_types

from hive_trio.core.coordinator import Coordinator
from hive_trio.errors import InvalidRequest
from hive_trio.records import (
    CONVERTER,
    MANAGER_AGENT,
    AgentNameArgs,
    AnswerArgs,
    AskArgs,
    Delivery,
    Message,
    NoArgs,
    RecentArgs,
    RecvArgs,
    RequestApplyCommitArgs,
    RequestSpawnArgs,
    SendArgs,
    SetStatusArgs,
    describe_error,
    unstructure,
)
from hive_trio.records.harness import RemindArgs
from hive_trio.rules.names import validate_agent_name

MAX_RECENT: Final = 500
COMMIT_REF: Final = re.compile(r"[0-9a-fA-F]{7,40}")
# Arguments that try to name a sender; refused with a reason rather than as a plain unknown key.
IDENTITY_KEYS: Final = frozenset({"from", "sender", "agent_name", "as"})

OnDelivered = Callable[[Sequence[Message]], None]


class UnknownTool(InvalidRequest):
    """A tool name this socket does not offer (MCP answers it as invalid params)."""


@attrs.frozen
class ToolSpec:
    name: str
    description: str
    args: type[Any]
    manager_only: bool = False

    @functools.cached_property
    def argument_names(self) -> frozenset[str]:
        return frozenset(f.name for f in attrs.fields(self.args))

    def as_mcp(self) -> mcp_types.Tool:
        return mcp_types.Tool(
            name=self.name,
            description=self.description,
            input_schema=input_schema(self.args),
            output_schema=output_schema(self.name),
        )


AGENT_TOOLS: Final = (
    ToolSpec(
        "send",
        "Send a message to another agent, 'manager', 'operator', or '*' (every agent). Returns its id.",
        SendArgs,
    ),
    ToolSpec(
        "recv",
        "Take the next messages from your inbox, oldest first, waiting up to wait_seconds for the first. "
        "Call ack_turn once you have acted on them; unacked messages come back (redelivered) after a restart.",
        RecvArgs,
    ),
    ToolSpec("ack_turn", "Acknowledge every message handed to you since the last ack_turn.", NoArgs),
    ToolSpec(
        "requeue_inflight",
        "Put every delivered-but-unacked message back in your inbox (call it at boot).",
        NoArgs,
    ),
    ToolSpec("status", "How many messages wait in your inbox.", NoArgs),
    ToolSpec("recent", "Your most recent inbox rows, delivered or not, without taking them.", RecentArgs),
    ToolSpec(
        "ask",
        "Ask the operator (or, with `to`, another agent) a question. Returns its id at once; the answer "
        "arrives later in your inbox as a question_answered event from 'system'.",
        AskArgs,
    ),
    ToolSpec("answer", "Answer a question another agent asked you (a question_asked event).", AnswerArgs),
    ToolSpec("set_status", "Set the one-line status shown on your dashboard card.", SetStatusArgs),
    ToolSpec("whoami", "Your name and role, as this socket knows you.", NoArgs),
    ToolSpec("list_agents", "The names of every agent in the hive (their sockets are up).", NoArgs),
    ToolSpec(
        "remind",
        "Schedule a message to yourself: it arrives from 'system' after delay_seconds (or at `at`), even "
        "across a daemon restart. Returns its id and due time.",
        RemindArgs,
    ),
)
# The harness role's tools (sockets/mcp/harness_tools.py): offered only on a run's harness channel.
HARNESS_TOOL_NAMES: Final = frozenset(
    {"turn_started", "turn_event", "turn_finished", "report_state", "request_permission", "wait_control"}
)
MANAGER_TOOLS: Final = (
    ToolSpec(
        "request_spawn",
        "Ask the operator to approve a new agent. Returns the approval id; the outcome arrives as an "
        "approval_resolved event.",
        RequestSpawnArgs,
        manager_only=True,
    ),
    ToolSpec(
        "request_apply_commit",
        "Ask the operator to approve deploying a commit of an agent's config repo. The commit is fetched "
        "and pinned now; a failed fetch fails the approval at once.",
        RequestApplyCommitArgs,
        manager_only=True,
    ),
    ToolSpec("kill", "Stop an agent (no approval needed).", AgentNameArgs, manager_only=True),
    ToolSpec("start", "Start a stopped agent.", AgentNameArgs, manager_only=True),
    ToolSpec("restart", "Restart an agent.", AgentNameArgs, manager_only=True),
    ToolSpec("update", "Rebuild an agent from its applied config and restart it.", AgentNameArgs, manager_only=True),
)


# ---------------------------------------------------------------------------------------- schemas


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": sorted(properties)}


_INT: Final = {"type": "integer"}
_STR: Final = {"type": "string"}
_NAME_RESULT: Final = _object({"name": _STR})
_APPROVAL_RESULT: Final = _object({"approval_id": _INT, "status": _STR})
_DELIVERY: Final = _object(
    {"id": _INT, "from": _STR, "body": _STR, "sent_at": {"type": "number"}, "redelivered": {"type": "boolean"}}
)
_MESSAGE: Final = _object(
    {
        "id": _INT,
        "from": _STR,
        "to": _STR,
        "body": _STR,
        "sent_at": {"type": "number"},
        "delivered_at": {"type": ["number", "null"]},
        "acked_at": {"type": ["number", "null"]},
        "redelivered": {"type": "boolean"},
    }
)
# The `structuredContent` each tool returns (MCP 2025-06-18 `outputSchema`): the same JSON as its text
# content, which stays for older clients. A tool without an entry here declares a bare object.
OUTPUT_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "send": _object({"id": {"type": ["integer", "null"]}, "ids": {"type": "array", "items": _INT}}),
    "recv": _object({"messages": {"type": "array", "items": _DELIVERY}}),
    "ack_turn": _object({"acked": _INT}),
    "requeue_inflight": _object({"requeued": _INT}),
    "status": _object({"name": _STR, "pending_messages": _INT}),
    "recent": _object({"messages": {"type": "array", "items": _MESSAGE}}),
    "ask": _object({"question_id": _INT, "deadline_at": {"type": ["number", "null"]}}),
    "answer": _object({"question_id": _INT, "answer": {"type": ["string", "null"]}}),
    "set_status": _object({"status_text": {"type": ["string", "null"]}}),
    "whoami": _object({"name": _STR, "role": {"type": "string", "enum": ["agent", "manager"]}}),
    "list_agents": _object({"agents": {"type": "array", "items": _STR}}),
    "request_spawn": _APPROVAL_RESULT,
    "request_apply_commit": _APPROVAL_RESULT,
    "kill": _NAME_RESULT,
    "start": _NAME_RESULT,
    "restart": _NAME_RESULT,
    "update": _NAME_RESULT,
    "remind": _object({"id": _INT, "due_at": {"type": "number"}}),
    # The harness role's (sockets/mcp/harness_tools.py).
    "turn_started": _object({"entry_id": _INT}),
    "turn_event": _object({"entry_id": _INT}),
    "turn_finished": _object({"budget_exceeded": {"type": "boolean"}}),
    "request_permission": _object(
        {
            "id": _INT,
            "decision": {"type": "string", "enum": ["allow", "deny"]},
            "reason": {"type": ["string", "null"]},
        }
    ),
    "wait_control": _object(
        {"interrupt": {"type": "boolean"}, "paused": {"type": "boolean"}, "budget_exceeded": {"type": "boolean"}}
    ),
}


def output_schema(tool: str) -> dict[str, Any]:
    return OUTPUT_SCHEMAS.get(tool, {"type": "object"})


def _schema_of(kind: Any) -> dict[str, Any]:
    origin = typing.get_origin(kind)
    if kind is Any:
        return {}
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return {"type": "string", "enum": [m.value for m in kind]}
    if kind is str:
        return {"type": "string"}
    if kind is bool:
        return {"type": "boolean"}
    if kind is int:
        return {"type": "integer"}
    if kind is float:
        return {"type": "number"}
    if origin is list:
        (item,) = typing.get_args(kind)
        return {"type": "array", "items": _schema_of(item)}
    if origin is types.UnionType or origin is typing.Union:
        members = [a for a in typing.get_args(kind) if a is not type(None)]
        nullable = len(members) < len(typing.get_args(kind))
        schemas = [_schema_of(m) for m in members] + ([{"type": "null"}] if nullable else [])
        if all(set(s) == {"type"} for s in schemas):
            return {"type": [s["type"] for s in schemas]}
        return {"anyOf": schemas}
    raise TypeError(f"no JSON schema for {kind!r}")


def input_schema(cls: type[Any]) -> dict[str, Any]:
    """The JSON schema of a tool's argument record, from its attrs fields and their `doc`."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        schema = _schema_of(hints[field.name])
        if "doc" in field.metadata:
            schema["description"] = field.metadata["doc"]
        if field.default is attrs.NOTHING:
            required.append(field.name)
        elif isinstance(field.default, enum.Enum):
            schema["default"] = field.default.value
        elif not isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            schema["default"] = field.default
        properties[field.name] = schema
    schema_out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema_out["required"] = required
    return schema_out


def parse_arguments(spec: ToolSpec, arguments: Mapping[str, Any] | None) -> Any:
    """Decode a `tools/call`'s arguments into the tool's record; unknown keys are refused by name."""
    arguments = {} if arguments is None else arguments
    known = spec.argument_names
    extra = sorted(arguments.keys() - known) if not arguments.keys() <= known else []
    claimed = [k for k in extra if k in IDENTITY_KEYS]
    if claimed:
        raise InvalidRequest(
            f"{spec.name}: {claimed[0]!r} cannot be set; this socket is your identity and every call is made as you"
        )
    if extra:
        allowed = ", ".join(sorted(known)) or "none"
        raise InvalidRequest(f"{spec.name}: unknown argument(s) {', '.join(map(repr, extra))} (allowed: {allowed})")
    try:
        return CONVERTER.structure(dict(arguments), spec.args)
    except Exception as exc:
        raise InvalidRequest(f"{spec.name}: bad arguments: {describe_error(exc)}") from exc


# ---------------------------------------------------------------------------------------- the tools


@functools.cache
def _catalogue(manager: bool) -> tuple[dict[str, ToolSpec], tuple[mcp_types.Tool, ...]]:
    """Each role's specs and MCP tool list, built once and shared by every socket of that role."""
    specs = AGENT_TOOLS + MANAGER_TOOLS if manager else AGENT_TOOLS
    return {s.name: s for s in specs}, tuple(s.as_mcp() for s in specs)


class ToolSurface(Protocol):
    """What `sockets.mcp.server` serves over one MCP connection: an agent socket's `Toolbox`, or a run's
    harness channel (`HarnessToolbox`)."""

    coordinator: Coordinator
    name: str

    @property
    def role(self) -> str: ...

    def mcp_tools(self) -> list[mcp_types.Tool]: ...

    async def call(self, tool: str, arguments: Mapping[str, Any] | None, *, on_delivered: OnDelivered) -> Any: ...


class Toolbox:
    """The tools of one socket, every call made as `name` (an agent, or the manager)."""

    def __init__(self, coordinator: Coordinator, name: str) -> None:
        self.coordinator = coordinator
        self.name = name
        self.is_manager = name == MANAGER_AGENT
        # Shared, not copied per agent: a thousand sockets hold one catalogue (docs/PERFORMANCE.md).
        self.specs, self._mcp_tools = _catalogue(self.is_manager)

    @property
    def role(self) -> str:
        return "manager" if self.is_manager else "agent"

    def mcp_tools(self) -> list[mcp_types.Tool]:
        return list(self._mcp_tools)

    async def call(self, tool: str, arguments: Mapping[str, Any] | None, *, on_delivered: OnDelivered) -> Any:
        """Run `tool` as this socket's agent and return its JSON result.

        `on_delivered` is called with the messages `recv` handed out, straight after they were stamped
        delivered and before anything else can fail or be cancelled, so the caller can put them back
        if its reply never reaches the agent.
        """
        spec = self.specs.get(tool)
        if spec is None:
            if any(s.name == tool for s in MANAGER_TOOLS):
                raise UnknownTool(f"{tool!r} is a manager tool; this socket belongs to agent {self.name!r}")
            if tool in HARNESS_TOOL_NAMES:
                # The model reaches mcp.sock; reports about an agent come only on its harness's own channel.
                raise UnknownTool(f"unknown tool {tool!r}: harness reports are not taken on this socket")
            raise UnknownTool(f"unknown tool {tool!r}; this socket offers: {', '.join(self.specs)}")
        args = parse_arguments(spec, arguments)
        # Keyed by name and argument record together: several tools share a record (`NoArgs`,
        # `AgentNameArgs`), and the class pattern lets mypy check each handler's argument type.
        match tool, args:
            case "send", SendArgs():
                return await self._send(args)
            case "recv", RecvArgs():
                return await self._recv(args, on_delivered)
            case "ack_turn", NoArgs():
                return await self._ack_turn(args)
            case "requeue_inflight", NoArgs():
                return await self._requeue_inflight(args)
            case "status", NoArgs():
                return await self._status(args)
            case "recent", RecentArgs():
                return await self._recent(args)
            case "ask", AskArgs():
                return await self._ask(args)
            case "answer", AnswerArgs():
                return await self._answer(args)
            case "set_status", SetStatusArgs():
                return await self._set_status(args)
            case "whoami", NoArgs():
                return await self._whoami(args)
            case "list_agents", NoArgs():
                return await self._list_agents(args)
            case "remind", RemindArgs():
                return await self._remind(args)
            case "request_spawn", RequestSpawnArgs():
                return await self._request_spawn(args)
            case "request_apply_commit", RequestApplyCommitArgs():
                return await self._request_apply_commit(args)
            case "kill", AgentNameArgs():
                return await self._kill(args)
            case "start", AgentNameArgs():
                return await self._start(args)
            case "restart", AgentNameArgs():
                return await self._restart(args)
            case "update", AgentNameArgs():
                return await self._update(args)
        raise AssertionError(f"tool {tool!r} is in the catalogue but has no handler")

    # ------------------------------------------------------------------ messages
    async def _send(self, args: SendArgs) -> dict[str, Any]:
        messages = await self.coordinator.send(self.name, args.to, args.body)
        ids = [m.id for m in messages]
        return {"id": ids[0] if ids else None, "ids": ids}

    async def _recv(self, args: RecvArgs, on_delivered: OnDelivered) -> dict[str, Any]:
        if args.wait_seconds < 0:
            raise InvalidRequest("recv: wait_seconds must not be negative")
        if args.max < 1:
            raise InvalidRequest("recv: max must be at least 1")
        messages = await self.coordinator.recv(self.name, wait_seconds=args.wait_seconds, limit=args.max)
        on_delivered(messages)
        deliveries = [
            Delivery(id=m.id, sender=m.sender, body=m.body, sent_at=m.sent_at, redelivered=m.redelivered)
            for m in messages
        ]
        return {"messages": unstructure(deliveries)}

    async def _ack_turn(self, _: NoArgs) -> dict[str, Any]:
        return {"acked": await self.coordinator.ack_turn(self.name)}

    async def _requeue_inflight(self, _: NoArgs) -> dict[str, Any]:
        return {"requeued": await self.coordinator.requeue_inflight(self.name)}

    async def _status(self, _: NoArgs) -> dict[str, Any]:
        return {"name": self.name, "pending_messages": await self.coordinator.inbox_depth(self.name)}

    async def _recent(self, args: RecentArgs) -> dict[str, Any]:
        if not 1 <= args.limit <= MAX_RECENT:
            raise InvalidRequest(f"recent: limit must be between 1 and {MAX_RECENT}")
        messages = await self.coordinator.recent_messages(self.name, limit=args.limit)
        return {"messages": unstructure(messages)}

    # ------------------------------------------------------------------ questions
    async def _ask(self, args: AskArgs) -> dict[str, Any]:
        question = await self.coordinator.ask(
            self.name,
            args.question,
            options=args.options,
            multi=args.multi,
            ttl_seconds=args.ttl_seconds,
            target=args.to,
            default_answer=args.default,
        )
        return {"question_id": question.id, "deadline_at": question.deadline_at}

    async def _answer(self, args: AnswerArgs) -> dict[str, Any]:
        question = await self.coordinator.answer_question(args.question_id, args.answer, answerer=self.name)
        return {"question_id": question.id, "answer": question.answer}

    # ------------------------------------------------------------------ about the hive
    async def _set_status(self, args: SetStatusArgs) -> dict[str, Any]:
        if self.is_manager:
            raise InvalidRequest("set_status: the manager has no status row; it is for sub-agents")
        record = await self.coordinator.set_status_text(self.name, args.text)
        return {"status_text": record.status_text}

    async def _whoami(self, _: NoArgs) -> dict[str, Any]:
        return {"name": self.name, "role": self.role}

    async def _list_agents(self, _: NoArgs) -> dict[str, Any]:
        # hive-c0re's `list_agents` is the registry of agent sockets, held in memory: no database read,
        # so it stays cheap however often a harness calls it. Status rows are the operator's (host.sock).
        result: dict[str, Any] = {"agents": self.coordinator.registered_names()}
        if self.coordinator.federation is not None:
            # Agents of other hives, addressed `name@hive` (docs/FEDERATION.md); held in memory too.
            result["remote_agents"] = unstructure(await self.coordinator.remote_agents())
        return result

    async def _remind(self, args: RemindArgs) -> dict[str, Any]:
        reminder = await self.coordinator.reports.remind(
            self.name, args.body, delay_seconds=args.delay_seconds, at=args.at
        )
        return {"id": reminder.id, "due_at": reminder.due_at}

    # ------------------------------------------------------------------ manager only
    def _target(self, tool: str, name: str) -> str:
        # hyperhive's manager can never act on its own container; a reserved name fails validation anyway,
        # but the reason should say what happened.
        if name == MANAGER_AGENT:
            raise InvalidRequest(f"{tool}: the manager cannot target itself")
        return validate_agent_name(name)

    async def _request_spawn(self, args: RequestSpawnArgs) -> dict[str, Any]:
        name = self._target("request_spawn", args.name)
        approval = await self.coordinator.ops.request_spawn(name, args.description, requested_by=self.name)
        return {"approval_id": approval.id, "status": approval.status.value}

    async def _request_apply_commit(self, args: RequestApplyCommitArgs) -> dict[str, Any]:
        agent = self._target("request_apply_commit", args.agent)
        if COMMIT_REF.fullmatch(args.commit_ref) is None:
            raise InvalidRequest("request_apply_commit: commit_ref must be a 7-40 character hex sha")
        approval = await self.coordinator.ops.request_apply_commit(
            agent, args.commit_ref.lower(), args.description, requested_by=self.name
        )
        return {"approval_id": approval.id, "status": approval.status.value}

    async def _kill(self, args: AgentNameArgs) -> dict[str, Any]:
        # hyperhive's `kill` is a container stop (graceful), not a SIGKILL.
        name = self._target("kill", args.name)
        await self.coordinator.ops.stop(name, graceful=True)
        return {"name": name}

    async def _start(self, args: AgentNameArgs) -> dict[str, Any]:
        name = self._target("start", args.name)
        await self.coordinator.ops.start(name)
        return {"name": name}

    async def _restart(self, args: AgentNameArgs) -> dict[str, Any]:
        name = self._target("restart", args.name)
        await self.coordinator.ops.restart(name)
        return {"name": name}

    async def _update(self, args: AgentNameArgs) -> dict[str, Any]:
        name = self._target("update", args.name)
        await self.coordinator.ops.rebuild(name)
        return {"name": name}


__all__ = [
    "AGENT_TOOLS",
    "HARNESS_TOOL_NAMES",
    "MANAGER_TOOLS",
    "OUTPUT_SCHEMAS",
    "OnDelivered",
    "ToolSpec",
    "ToolSurface",
    "Toolbox",
    "UnknownTool",
    "input_schema",
    "output_schema",
    "parse_arguments",
]
