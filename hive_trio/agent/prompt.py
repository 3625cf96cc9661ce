"""The wake prompt: the mail of one turn, written for a reader (the model), never raw JSON.

A HelperEvent arrives as a message from `system` whose body is a JSON object tagged `event`; it is
rendered as a sentence ("Approval #3 for alice was approved: looks good"). Other messages keep their
body as sent. The restart note (`kick_agent`'s "you were just (re)started ...") is plain text from
`system` and is shown as such. Pure functions: no I/O, no hive imports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

SYSTEM_SENDER: Final = "system"  # records.SYSTEM_SENDER; kept literal so this module imports nothing of ours
HARNESS_TOOLS: Final = ("ack_turn", "requeue_inflight")  # the harness owns the lease; the model never acks


@attrs.frozen
class InboxMessage:
    """One message of a `recv` result."""

    id: int
    sender: str
    body: str
    sent_at: str | None = None
    redelivered: bool = False

    @classmethod
    def from_wire(cls, item: Mapping[str, Any]) -> InboxMessage:
        try:
            return cls(
                id=int(item["id"]),
                sender=str(item["from"]),
                body=str(item["body"]),
                sent_at=item.get("sent_at"),
                redelivered=bool(item.get("redelivered", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a recv message: {item!r}") from exc


def messages_from_recv(result: Any) -> list[InboxMessage]:
    items = result.get("messages", []) if isinstance(result, Mapping) else []
    return [InboxMessage.from_wire(m) for m in items if isinstance(m, Mapping)]


def helper_event(message: InboxMessage) -> Mapping[str, Any] | None:
    """The HelperEvent a `system` message carries, or None for a plain note."""
    if message.sender != SYSTEM_SENDER or not message.body.startswith("{"):
        return None
    try:
        data = json.loads(message.body)
    except ValueError:
        return None
    if isinstance(data, Mapping) and isinstance(data.get("event"), str):
        return data
    return None


def _field(event: Mapping[str, Any], key: str, default: str = "?") -> str:
    value = event.get(key)
    return default if value is None or value == "" else str(value)


def _approval(e: Mapping[str, Any]) -> str:
    note = f": {e['note']}" if e.get("note") else ""
    sha = f" (commit {str(e['sha'])[:12]})" if e.get("sha") else ""
    return f"Approval #{_field(e, 'id')} for {_field(e, 'agent')}{sha} was {_field(e, 'status')}{note}."


def _question_asked(e: Mapping[str, Any]) -> str:
    options = e.get("options") or []
    choice = ""
    if options:
        joined = ", ".join(str(o) for o in options)
        choice = f" Options ({'pick any' if e.get('multi') else 'pick one'}): {joined}."
    deadline = f" Answer by {e['deadline_at']}." if e.get("deadline_at") else ""
    return (
        f"{_field(e, 'asker')} asks you (question #{_field(e, 'id')}): {_field(e, 'question')}{choice}{deadline} "
        f"Reply with the `answer` tool."
    )


def _question_answered(e: Mapping[str, Any]) -> str:
    return (
        f"Your question #{_field(e, 'id')} ({_field(e, 'question')}) was answered by {_field(e, 'answerer')}: "
        f"{_field(e, 'answer', '')}"
    )


EVENT_TEXT: Final[Mapping[str, Callable[[Mapping[str, Any]], str]]] = {
    "approval_resolved": _approval,
    "spawned": lambda e: f"Agent {_field(e, 'agent')} was spawned.",
    "rebuilt": lambda e: f"Agent {_field(e, 'agent')} was rebuilt (commit {_field(e, 'sha')[:12]}).",
    "killed": lambda e: f"Agent {_field(e, 'agent')} was stopped.",
    "destroyed": lambda e: f"Agent {_field(e, 'agent')} was destroyed.",
    "container_crash": lambda e: f"Agent {_field(e, 'agent')} crashed: {_field(e, 'note', 'no detail')}.",
    "needs_update": lambda e: f"Agent {_field(e, 'agent')} runs an outdated config; it needs a rebuild or restart.",
    "question_asked": _question_asked,
    "question_answered": _question_answered,
    "needs_login": lambda e: f"Agent {_field(e, 'agent')} needs a login: its model credentials were refused.",
    "logged_in": lambda e: f"Agent {_field(e, 'agent')} is logged in again.",
    "turn_failed": lambda e: f"A turn of agent {_field(e, 'agent')} failed: {_field(e, 'note', 'no detail')}.",
}


def render_event(event: Mapping[str, Any]) -> str:
    kind = str(event.get("event"))
    render = EVENT_TEXT.get(kind)
    if render is not None:
        return render(event)
    rest = ", ".join(f"{k}: {v}" for k, v in event.items() if k != "event")
    return f"Hive event `{kind}`" + (f" ({rest})." if rest else ".")


def render_message(message: InboxMessage) -> str:
    event = helper_event(message)
    when = f" at {message.sent_at}" if message.sent_at else ""
    again = " (delivered before; the turn that got it did not finish)" if message.redelivered else ""
    if event is not None:
        head = f"### Hive event (message {message.id}{when}){again}"
        return f"{head}\n{render_event(event)}"
    return f"### Message {message.id} from {message.sender}{when}{again}\n{message.body}"


def wake_prompt(agent: str, messages: Sequence[InboxMessage]) -> str:
    """The prompt of one turn: who the agent is, its mail, and how the turn ends."""
    count = f"{len(messages)} new message{'s' if len(messages) != 1 else ''}"
    parts = [
        f"You are `{agent}`, an agent of a hive. You have {count} in your hive inbox.",
        *(render_message(m) for m in messages),
        (
            "Act on them. Reach anyone with the hive tools (`send` with `to` set to the sender's name; "
            "`operator` is the human; `ask` for a question with a deadline). When you have done what these "
            "messages need, end your turn: the harness acknowledges them then, so do not call `ack_turn` "
            "yourself. If the turn fails, they come back to you marked as delivered before."
        ),
    ]
    return "\n\n".join(parts)
