"""Agent names: the one gate every name passes before it becomes a path, a socket or a row.

hive-c0re builds paths straight from the name it is handed; here nothing builds a path from a name
that `validate_agent_name` has not accepted (SPEC §2). It must never touch the filesystem.
"""

from __future__ import annotations

import re
from typing import Final

from hive_trio.errors import InvalidRequest
from hive_trio.records import MANAGER_AGENT, OPERATOR, SYSTEM_SENDER

# The longest agent name; it is a path component of every agent socket (see cli.discovery).
MAX_NAME_LENGTH: Final = 31
AGENT_NAME_PATTERN: Final = re.compile(r"[a-z][a-z0-9-]{0,30}")
RESERVED_NAMES: Final = frozenset({MANAGER_AGENT, SYSTEM_SENDER, OPERATOR})


class InvalidName(InvalidRequest):
    """A name that can never be an agent. The message says why, for a person."""


def validate_agent_name(name: object) -> str:
    """Return `name` if it can be a (sub-)agent's name, else raise `InvalidName`."""
    if not isinstance(name, str):
        raise InvalidName(f"agent name must be a string, got {type(name).__name__}")
    if name == "":
        raise InvalidName("agent name is empty")
    shown = name if len(name) <= 40 else name[:37] + "..."
    if "\x00" in name:
        raise InvalidName(f"agent name {shown!r} contains a NUL byte")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"agent name {shown!r} is longer than {MAX_NAME_LENGTH} characters")
    if name in RESERVED_NAMES:
        raise InvalidName(f"{name!r} is reserved and cannot be an agent name")
    if AGENT_NAME_PATTERN.fullmatch(name) is None:
        raise InvalidName(
            f"agent name {shown!r} is not allowed: use a lower-case letter, then lower-case letters, digits or '-'"
        )
    return name


def validate_recipient(name: object) -> str:
    """A message may also go to the manager, the operator, or `*` (checked by the broker)."""
    if name in (MANAGER_AGENT, OPERATOR, "*"):
        assert isinstance(name, str)
        return name
    return validate_agent_name(name)
