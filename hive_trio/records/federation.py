"""Shapes that cross a hive-to-hive link: the wire payloads on NATS, the remote roster, the link state.

Re-exported from `hive_trio.records`, whose one converter encodes them. Like the rest of `records`, it
imports nothing else of hive_trio's and holds no behaviour beyond shape.

The payloads carry no sender and no origin hive on purpose: the receiving hive reads both from the
subject it consumed, which NATS permissions tie to the publishing hive (docs/FEDERATION.md), so a
payload can never make a message look local or as if another hive sent it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Final

import attrs

if TYPE_CHECKING:  # rows imports this module (the snapshot's link fields)
    from hive_trio.records.rows import Message

# The wire shape of an address: `fed.<origin>.<dest>.<sender>.<recipient>`; parsed and validated in
# rules.federation. The names below are records' own copies (records imports nothing of ours).
SUBJECT_PREFIX: Final = "fed"
# The recipient token of a broadcast (`*@hive`): `*` is a NATS wildcard, and no agent name starts with `_`.
BROADCAST_TOKEN: Final = "_all"
_SYSTEM: Final = "system"
_BROADCAST: Final = "*"


@attrs.frozen
class RemoteAddress:
    """`agent@hive` (from `rules.federation.parse_address`)."""

    agent: str  # an agent name, `manager`, `operator`, or BROADCAST
    hive: str

    @property
    def token(self) -> str:
        return BROADCAST_TOKEN if self.agent == _BROADCAST else self.agent

    def __str__(self) -> str:
        return f"{self.agent}@{self.hive}"


@attrs.frozen
class MessageSubject:
    """A consumed subject, parsed: the origin and the sender are facts (NATS permissions tie them)."""

    origin: str
    dest: str
    sender: str
    recipient_token: str

    @property
    def is_bounce(self) -> bool:
        return self.sender == _SYSTEM


def message_subject(*, origin: str, dest: str, sender: str, recipient_token: str) -> str:
    return f"{SUBJECT_PREFIX}.{origin}.{dest}.{sender}.{recipient_token}"


def msg_id(origin: str, message_id: int) -> str:
    """`Nats-Msg-Id`: unique per origin hive, so JetStream's dedup window drops a republished message."""
    return f"{origin}:{message_id}"


@attrs.frozen
class HelperUndeliverable:
    """A HelperEvent from `system`: a message to another hive could not be put in an inbox there.

    `id` is the message id `send` returned; `to` is the address as sent (`agent@hive`).
    """

    tag_value: ClassVar[str] = "undeliverable"
    id: int
    to: str
    reason: str


@attrs.frozen
class WireMessage:
    """The payload of `fed.<origin>.<dest>.<sender>.<recipient>`: what the sender wrote, and its id at home."""

    id: int
    body: str
    sent_at: float


@attrs.frozen
class WireBounce:
    """The payload of `fed.<origin>.<dest>.system.<sender>`: message `id` (the destination's own id)
    could not be delivered on the origin hive, for `reason`."""

    id: int
    reason: str


@attrs.frozen
class RemoteAgentRow:
    """One agent in a roster a hive publishes: only what another hive's agents may see."""

    name: str
    running: bool
    status_text: str | None = None


@attrs.frozen
class WireRoster:
    """The payload of `roster.<hive>`, published periodically (it doubles as the link's heartbeat)."""

    agents: list[RemoteAgentRow]
    at: float


@attrs.frozen
class RemoteAgent:
    """A remote agent as `list_agents`, `hive-trio status` and the dashboard show it."""

    name: str
    hive: str
    running: bool
    status_text: str | None
    # When its hive's roster was last heard (unix seconds); a stale one means the link is down.
    seen_at: float

    @property
    def address(self) -> str:
        return str(RemoteAddress(self.name, self.hive))


@attrs.frozen
class LinkState:
    """This hive's side of the federation, for the operator's link-state line."""

    hive: str
    connected: bool
    # Messages committed to the outbox and not yet acknowledged by the destination's JetStream.
    outbox_depth: int
    # `sent_at` of the oldest of those (unix seconds), or None when the outbox is empty.
    oldest_unforwarded_at: float | None
    # When anything was last heard from another hive (a roster, a message), or None.
    last_contact_at: float | None
    peers: dict[str, float] = attrs.field(factory=dict)
    error: str | None = None


@attrs.frozen
class OutboxItem:
    """An `outbox` row: what the forwarder publishes, already encoded (subject, payload, Nats-Msg-Id)."""

    id: int
    message_id: int | None
    kind: str
    hive: str
    sender: str
    address: str
    subject: str
    nats_msg_id: str
    payload: str
    queued_at: float


@attrs.frozen
class OutboxStats:
    depth: int
    oldest_queued_at: float | None


@attrs.frozen
class Arrival:
    """One message consumed from the link: its parsed subject (the facts) and its payload."""

    subject: MessageSubject
    wire: WireMessage | WireBounce


@attrs.frozen
class Accepted:
    """What one consumed message did here: inbox rows, or a bounce queued, or nothing (a duplicate)."""

    messages: list[Message] = attrs.field(factory=list)
    bounced: str | None = None
    duplicate: bool = False


__all__ = [
    "BROADCAST_TOKEN",
    "SUBJECT_PREFIX",
    "Accepted",
    "Arrival",
    "HelperUndeliverable",
    "LinkState",
    "MessageSubject",
    "OutboxItem",
    "OutboxStats",
    "RemoteAddress",
    "RemoteAgent",
    "RemoteAgentRow",
    "WireBounce",
    "WireMessage",
    "WireRoster",
    "message_subject",
    "msg_id",
]
