"""The base of every variant of a tagged wire union: the variant names its tag once, in its class line.

`class HostKill(Tagged, tag="kill")` sets the `tag_value` ClassVar that `records.convert` reads to build
each union's tag (`cmd`, `op`, `event`, `kind`). Imports nothing of the project; it must never hold fields.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Tagged:
    """A record that is one variant of a tagged union; subclasses pass `tag=` (bases that only share fields don't)."""

    __slots__ = ()
    tag_value: ClassVar[str]

    def __init_subclass__(cls, *, tag: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if tag is not None:
            cls.tag_value = tag
