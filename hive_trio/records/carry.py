"""`carried`: a record built from another's same-named fields, for the events and rows that restate one.

`QuestionAddedEvent` restates a `Question`, `PermissionAddedEvent` a `PermissionRequest` (and the live
state turns the event back into the row): each used to list every field twice, `id=q.id, ...`. The
fields that differ are passed by name, so what is not copied is written where it is built. Imports
attrs only; it reads attributes and never converts a value.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs

T = TypeVar("T")


def carried(cls: type[T], source: object, **fields: Any) -> T:
    """A `cls` (an attrs class) whose fields are `fields`, then `source`'s attributes of the same name.

    A field `source` lacks keeps its default (an event's `seq`, a row's decision); one without a default
    that `source` lacks is a TypeError, as it is for any missing argument.
    """
    names = (f.name for f in attrs.fields(cls))  # type: ignore[arg-type]  # T is an attrs class; attrs has no bound to say so
    copied = {n: getattr(source, n) for n in names if n not in fields and hasattr(source, n)}
    return cls(**copied, **fields)
