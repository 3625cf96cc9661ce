"""A table's columns read into its record: the column list comes from the record's attrs fields, written once.

Before, each store wrote a `_COLUMNS` string and a positional `_row` mapper that had to be edited in step.
`require_by_id` is the one read every id-keyed store shares (approvals, questions, permission requests).
Imports attrs and `errors` only; apart from that one SELECT on a connection it is given, it never runs SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from hive_trio.errors import NotFound

if TYPE_CHECKING:
    import apsw

T = TypeVar("T")


class Columns(Generic[T]):
    """`sql` names the columns for `SELECT`/`RETURNING`; `read` turns one row of them into a `cls`."""

    def __init__(
        self,
        cls: type[T],
        *,
        convert: Mapping[str, Callable[[Any], Any]] | None = None,
        column: Mapping[str, str] | None = None,
    ) -> None:
        # `convert` maps a field to what turns its stored value into the field's (sqlite has no bool or enum);
        # `column` names the columns whose name differs from the field's.
        convert, column = convert or {}, column or {}
        names = tuple(f.name for f in attrs.fields(cls))  # type: ignore[arg-type]  # T is an attrs class; attrs has no bound to say so
        unknown = (set(convert) | set(column)) - set(names)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field {sorted(unknown)}")
        self._cls = cls
        self._fields = tuple((name, convert.get(name)) for name in names)
        self.sql = ", ".join(column.get(name, name) for name in names)

    def read(self, row: Sequence[Any]) -> T:
        return self._cls(**{name: v if f is None else f(v) for (name, f), v in zip(self._fields, row, strict=True)})


def require_by_id(conn: apsw.Connection, columns: Columns[T], table: str, row_id: int, *, noun: str) -> T:
    """Row `row_id` of `table` (trusted, the caller's literal), or `NotFound` ("no approval #3")."""
    row = conn.execute(f"SELECT {columns.sql} FROM {table} WHERE id = ?", (row_id,)).fetchone()
    if row is None:
        raise NotFound(f"no {noun} #{row_id}")
    return columns.read(row)
