"""Field bases that variants of several wire unions share: one place for `name`, `agent`, `id` and `req`.

A variant subclasses a base and passes its tag (`class HostKill(Named, tag="kill"): ...`); the base's
fields come first, in the order written here, so a variant keeps the wire order it had when it spelled
them itself. Imports only `records.tagged`; like the rest of `records` it holds shape, never behaviour.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

from hive_trio.records.tagged import Tagged


def doc(text: str) -> dict[str, str]:
    """A field's `doc` metadata: the text a tool's JSON schema shows for that argument (`sockets.mcp.tools`)."""
    return {"doc": text}


# A client-chosen request id of a dashboard action: a JSON number or string (or absent).
RequestId: TypeAlias = int | str | None


@attrs.frozen
class Named(Tagged):
    """A host.sock verb on one agent, by name."""

    name: str


@attrs.frozen
class NamedAction(Tagged):
    """A dashboard action on one agent, by name."""

    name: str
    req: RequestId = None


@attrs.frozen
class ById(Tagged):
    """A host.sock verb on one row (approval, question, permission request), by id."""

    id: int


@attrs.frozen
class ByIdAction(Tagged):
    """A dashboard action on one row, by id."""

    id: int
    req: RequestId = None


@attrs.frozen
class AboutAgent(Tagged):
    """A helper event that names only the agent."""

    agent: str


@attrs.frozen
class AgentNote(Tagged):
    """A helper event about an agent, with an optional note for a person."""

    agent: str
    note: str | None = None
