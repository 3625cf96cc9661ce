"""The errors a caller of the hive can see. Each message is written for a person, not a stack trace.

Adapters (MCP, host.sock, dashboard) turn these into their wire's error shape; nothing else about an
exception ever leaves the daemon. This module imports nothing of ours.
"""

from __future__ import annotations


class HiveError(Exception):
    """Base class: a refusal with a reason the caller can act on."""


class InvalidRequest(HiveError):
    """The request is malformed or names something that can never exist."""


class UnknownAgent(HiveError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown agent {name!r}")
        self.name = name


class NotFound(HiveError):
    pass


class Conflict(HiveError):
    """The state moved on: approving twice, answering an answered question, an agent that already exists."""


class TooLarge(HiveError):
    pass


class Busy(HiveError):
    """A lifecycle action is already in flight for this agent (refused, never queued)."""


class StorageError(HiveError):
    """The database could not commit (disk full, read-only). Nothing was changed."""


class LifecycleFailed(HiveError):
    """A backend command failed; the message carries its reason."""


# ------------------------------------------------------------------------------- exception groups
# trio wraps whatever crosses a nursery in an ExceptionGroup. Like trio-websocket, our context managers
# and the CLI do not leak those groups to their callers when one error is all there is.


def leaves(exc: BaseException) -> list[BaseException]:
    """Every exception inside `exc`, nested groups flattened; a lone exception is its own only leaf."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def sole_error(exc: BaseException, *, ignoring: tuple[type[BaseException], ...] = ()) -> BaseException | None:
    """The one exception inside `exc` once `ignoring` leaves are dropped (say `trio.Cancelled`), or None
    when there are several or none: then the group itself is the honest report."""
    found = [leaf for leaf in leaves(exc) if not isinstance(leaf, ignoring)]
    return found[0] if len(found) == 1 else None
