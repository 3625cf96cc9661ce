"""How much of each list a snapshot may carry, so it always fits a client's 1 MiB frame.

A snapshot once carried every open question and every pending approval whole: 10,000 open questions made
4.4 MB, which a client reading with a 1 MiB message limit could not load, so the dashboard could not
connect at all. Each part now has a byte budget; what does not fit is counted in the snapshot's
`omitted` field, and the full lists stay where they always were (host.sock `questions` and
`approvals`, `hive-trio questions`), and arrive as events when they change. hyperhive's dashboard has
the same unbounded snapshot. Pure: sizes are estimated from the records, never by encoding them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import attrs

from hive_trio.records import Approval, Question

T = TypeVar("T")

# The default budget, in bytes of text, for the bounded parts together; with the agent rows it stays well
# under 1 MiB. Config `snapshot_budget_bytes` changes it; the parts share it as below.
DEFAULT_SNAPSHOT_BUDGET: Final = 704 * 1024


@attrs.frozen
class SnapshotBudget:
    approvals: int
    questions: int
    messages: int

    @classmethod
    def share(cls, total: int) -> SnapshotBudget:
        """Half for pending approvals (their diffs), a quarter each for open questions and recent mail."""
        return cls(approvals=total // 2, questions=total // 4, messages=total // 4)


# What a record costs besides its long text fields: keys, ids, times, names.
RECORD_OVERHEAD: Final = 200


def approval_size(a: Approval) -> int:
    return RECORD_OVERHEAD + len(a.diff or "") + len(a.description or "") + len(a.note or "")


def question_size(q: Question) -> int:
    return RECORD_OVERHEAD + len(q.question) + sum(len(o) + 4 for o in q.options) + len(q.default_answer or "")


def within_budget(items: Sequence[T], *, size: Callable[[T], int], max_bytes: int) -> tuple[list[T], int]:
    """The leading `items` whose sizes add up to at most `max_bytes` (always at least one), and how many
    were left out. Order is kept: the oldest approval and the oldest question come first."""
    kept: list[T] = []
    total = 0
    for item in items:
        total += size(item)
        if kept and total > max_bytes:
            break
        kept.append(item)
    return kept, len(items) - len(kept)


__all__ = [
    "DEFAULT_SNAPSHOT_BUDGET",
    "SnapshotBudget",
    "approval_size",
    "question_size",
    "within_budget",
]
