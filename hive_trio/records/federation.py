"""Shapes that cross a hive-to-hive link: the wire payloads on NATS, the remote roster, the link state.

Re-exported from `hive_trio.records`, whose one converter encodes them. Like the rest of `records`, it
imports nothing else of hive_trio's and holds no behaviour beyond shape.

The payloads carry no sender and no origin hive on purpose: the receiving hive reads both from the
subject it consumed, which NATS permissions tie to the publishing hive (docs/FEDERATION.md), so a
payload can never make a message look local or as if another hive sent it.
"""

from __future__ import annotations

from typing import ClassVar

import attrs


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
        return f"{self.name}@{self.hive}"


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


__all__ = [
    "HelperUndeliverable",
    "LinkState",
    "RemoteAgent",
    "RemoteAgentRow",
    "WireBounce",
    "WireMessage",
    "WireRoster",
]
