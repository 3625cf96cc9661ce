"""The human form of the harness listings (`hive-trio permissions`, `transcript`, `reminders`)."""

from __future__ import annotations

from hive_trio.cli.harness_commands import _listing
from hive_trio.cli.operator import format_table


def test_empty_listing_says_so() -> None:
    human = _listing("reminders", "no pending reminders for alpha", ["ID", "BODY"], lambda m: [m["id"], m["body"]])
    assert human({"reminders": []}) == "no pending reminders for alpha"
    assert human({}) == "no pending reminders for alpha"


def test_listing_is_a_table_of_each_row() -> None:
    human = _listing("reminders", "none", ["ID", "BODY"], lambda m: [m["id"], m["body"]])
    rows = [{"id": 1, "body": "check the build"}, {"id": 12, "body": "ship"}]
    assert human({"reminders": rows}) == format_table(["ID", "BODY"], [[1, "check the build"], [12, "ship"]])
    assert human({"reminders": rows}).splitlines()[2].split() == ["12", "ship"]
