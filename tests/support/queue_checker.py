"""A Jepsen-style checker for the broker's history across crashes (sans-IO: plain records in, a verdict out).

The RabbitMQ Jepsen checker sorts every message into lost (acknowledged to its sender, never received),
recovered (its send was never acknowledged, yet it arrived), unexpected (received, never sent) and
duplicated (received more than once). Our broker adds two facts it can check more tightly:

- a message has an id, so a *duplicate* is one body under two ids (the sender retried a send whose reply
  never came); and a *redelivery* is one id handed out twice (its recipient never confirmed an ack).
- a redelivery must carry `redelivered: true`, and an id whose `ack_turn` reply reached its recipient must
  never be handed out again.

Valid means: nothing lost, nothing unexpected, nothing corrupted or out of order, every duplicate explained
by a send whose reply was never written, every redelivery flagged and none after a confirmed ack.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import attrs


@attrs.define
class SendAttempt:
    body: str
    recipient: str
    acked_id: int | None = None  # the id from the reply; None if the reply never came

    @property
    def indeterminate(self) -> bool:
        return self.acked_id is None


@attrs.define
class Receipt:
    """One message as a `recv` reply handed it to its recipient."""

    id: int
    body: str
    recipient: str
    redelivered: bool
    ack_confirmed: bool = False  # an `ack_turn` sent after this receipt got its reply


@attrs.define
class History:
    attempts: list[SendAttempt] = attrs.Factory(list)
    receipts: list[Receipt] = attrs.Factory(list)

    def attempt(self, body: str, recipient: str) -> SendAttempt:
        attempt = SendAttempt(body, recipient)
        self.attempts.append(attempt)
        return attempt

    def received(self, recipient: str, messages: list[dict[str, object]]) -> list[Receipt]:
        got = [
            Receipt(
                id=int(m["id"]),  # type: ignore[call-overload]
                body=str(m["body"]),
                recipient=recipient,
                redelivered=bool(m["redelivered"]),
            )
            for m in messages
        ]
        self.receipts.extend(got)
        return got


@attrs.frozen
class Verdict:
    attempted: int
    acknowledged: int
    received_ok: int  # acknowledged sends whose id was received
    lost: list[str]
    recovered: list[str]
    unexpected: list[str]
    duplicated: list[str]  # bodies received under more than one id
    unexplained_duplicates: list[str]  # ... without a send whose reply never came
    redelivered: int  # ids handed out again, flagged
    bad_redeliveries: list[int]  # not flagged, or after a confirmed ack
    corrupted: list[int]  # the id's body or recipient is not what its acknowledged send said
    out_of_order: list[str]  # per recipient, first receipts not in id (send) order

    @property
    def valid(self) -> bool:
        return not (
            self.lost
            or self.unexpected
            or self.unexplained_duplicates
            or self.bad_redeliveries
            or self.corrupted
            or self.out_of_order
        )

    def summary(self) -> str:
        return (
            f"attempted={self.attempted} acknowledged={self.acknowledged} "
            f"unacknowledged={self.attempted - self.acknowledged} received_ok={self.received_ok} "
            f"lost={len(self.lost)} recovered={len(self.recovered)} unexpected={len(self.unexpected)} "
            f"duplicated={len(self.duplicated)} (unexplained {len(self.unexplained_duplicates)}) "
            f"redelivered={self.redelivered} bad_redeliveries={len(self.bad_redeliveries)} "
            f"corrupted={len(self.corrupted)} out_of_order={len(self.out_of_order)}"
        )


def check(history: History) -> Verdict:
    attempts_by_body: dict[str, list[SendAttempt]] = defaultdict(list)
    for a in history.attempts:
        attempts_by_body[a.body].append(a)
    receipts_by_id: dict[int, list[Receipt]] = defaultdict(list)
    ids_by_body: dict[str, set[int]] = defaultdict(set)
    for r in history.receipts:
        receipts_by_id[r.id].append(r)
        ids_by_body[r.body].add(r.id)

    lost, recovered, duplicated, unexplained, corrupted = [], [], [], [], []
    received_ok = 0
    for body, attempts in attempts_by_body.items():
        acked = [a for a in attempts if not a.indeterminate]
        got = ids_by_body.get(body, set())
        for a in acked:
            assert a.acked_id is not None
            if a.acked_id not in receipts_by_id:
                lost.append(body)
                continue
            received_ok += 1
            first = receipts_by_id[a.acked_id][0]
            if (first.body, first.recipient) != (a.body, a.recipient):
                corrupted.append(a.acked_id)
        if not acked and got:
            recovered.append(body)
        if len(got) > 1:
            duplicated.append(body)
            # Each extra id needs a send whose reply never came (its retry made the other).
            if len(got) > len(attempts) or not any(a.indeterminate for a in attempts):
                unexplained.append(body)
    unexpected = sorted(body for body in ids_by_body if body not in attempts_by_body)

    redelivered = 0
    bad: list[int] = []
    for mid, receipts in receipts_by_id.items():
        for earlier, later in itertools.pairwise(receipts):
            redelivered += 1
            if not later.redelivered or earlier.ack_confirmed:
                bad.append(mid)

    out_of_order: list[str] = []
    seen: set[int] = set()
    last_first: dict[str, int] = {}
    for r in history.receipts:
        if r.id in seen:
            continue
        seen.add(r.id)
        if r.id < last_first.get(r.recipient, 0):
            out_of_order.append(f"{r.recipient}: {r.id} after {last_first[r.recipient]}")
        last_first[r.recipient] = max(r.id, last_first.get(r.recipient, 0))

    return Verdict(
        attempted=len(history.attempts),
        acknowledged=sum(not a.indeterminate for a in history.attempts),
        received_ok=received_ok,
        lost=sorted(lost),
        recovered=sorted(recovered),
        unexpected=unexpected,
        duplicated=sorted(duplicated),
        unexplained_duplicates=sorted(unexplained),
        redelivered=redelivered,
        bad_redeliveries=sorted(set(bad)),
        corrupted=sorted(corrupted),
        out_of_order=out_of_order,
    )
