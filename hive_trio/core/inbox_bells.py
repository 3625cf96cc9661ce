"""Per-agent inbox bells: how a parked `recv` wakes without polling.

The coordinator rings an agent's bell right after the commit that makes a message deliverable to it
(a send, a notice, a release, a requeue, an un-pause); `recv` takes the bell *before* it looks at the
inbox, so a message that lands in between is never missed. This used to ride on the event hub seeing
a dashboard `sent` event; the hub is now pure fan-out and delivery never depends on an observability
event. In memory and synchronous; it never touches the database or a socket.
"""

from __future__ import annotations

import trio


class InboxBells:
    def __init__(self) -> None:
        self._bells: dict[str, trio.Event] = {}

    def bell(self, name: str) -> trio.Event:
        """Take the bell *before* looking at the inbox; if a message lands after, the bell is already set."""
        bell = self._bells.get(name)
        if bell is None:
            bell = self._bells[name] = trio.Event()
        return bell

    def ring(self, name: str) -> None:
        bell = self._bells.pop(name, None)
        if bell is not None:
            bell.set()


__all__ = ["InboxBells"]
