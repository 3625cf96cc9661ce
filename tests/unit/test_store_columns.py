"""store.columns: the column list follows the record's fields; conversions and renamed columns are per field."""

from __future__ import annotations

import pytest

from hive_trio.records import Message
from hive_trio.store.columns import Columns


def test_columns_follow_fields_with_renames_and_conversions() -> None:
    cols = Columns(Message, convert={"redelivered": bool}, column={"redelivered": "requeued"})
    assert cols.sql == "id, sender, recipient, body, sent_at, delivered_at, acked_at, requeued"
    msg = cols.read((7, "a", "b", "hi", 1.0, None, None, 1))
    assert msg == Message(id=7, sender="a", recipient="b", body="hi", sent_at=1.0, redelivered=True)


def test_a_short_row_is_refused() -> None:
    with pytest.raises(ValueError):
        Columns(Message).read((7, "a"))


def test_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="no field"):
        Columns(Message, convert={"requeued": bool})
