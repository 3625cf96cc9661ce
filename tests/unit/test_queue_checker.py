"""The crash tests' checker must catch what it claims to: each kind of broken history is flagged."""

from __future__ import annotations

from queue_checker import History, check


def delivered(history: History, recipient: str, *rows: tuple[int, str, bool]) -> None:
    history.received(recipient, [{"id": i, "body": b, "redelivered": r} for i, b, r in rows])


def test_a_clean_history_is_valid() -> None:
    h = History()
    h.attempt("a", "r").acked_id = 1
    h.attempt("b", "r").acked_id = 2
    delivered(h, "r", (1, "a", False), (2, "b", False))
    verdict = check(h)
    assert verdict.valid and verdict.received_ok == 2 and verdict.acknowledged == 2


def test_an_acknowledged_message_never_received_is_lost() -> None:
    h = History()
    h.attempt("a", "r").acked_id = 1
    verdict = check(h)
    assert not verdict.valid and verdict.lost == ["a"]


def test_an_unacknowledged_send_that_arrives_is_recovered_and_fine() -> None:
    h = History()
    h.attempt("a", "r")  # the reply never came
    delivered(h, "r", (1, "a", False))
    verdict = check(h)
    assert verdict.valid and verdict.recovered == ["a"]


def test_a_retry_after_a_lost_reply_may_duplicate_but_nothing_else_may() -> None:
    h = History()
    h.attempt("a", "r")  # committed as 1, reply lost
    h.attempt("a", "r").acked_id = 2  # the retry
    delivered(h, "r", (1, "a", False), (2, "a", False))
    verdict = check(h)
    assert verdict.valid and verdict.duplicated == ["a"] and verdict.unexplained_duplicates == []

    h = History()
    h.attempt("b", "r").acked_id = 1
    delivered(h, "r", (1, "b", False), (2, "b", False))  # a second row nobody sent
    verdict = check(h)
    assert not verdict.valid and verdict.unexplained_duplicates == ["b"]


def test_redelivery_must_be_flagged_and_never_follow_a_confirmed_ack() -> None:
    h = History()
    h.attempt("a", "r").acked_id = 1
    delivered(h, "r", (1, "a", False), (1, "a", True))
    assert check(h).valid and check(h).redelivered == 1

    h = History()
    h.attempt("a", "r").acked_id = 1
    delivered(h, "r", (1, "a", False), (1, "a", False))
    assert check(h).bad_redeliveries == [1]

    h = History()
    h.attempt("a", "r").acked_id = 1
    delivered(h, "r", (1, "a", False))
    h.receipts[0].ack_confirmed = True
    delivered(h, "r", (1, "a", True))
    assert check(h).bad_redeliveries == [1]


def test_unexpected_corrupted_and_reordered_messages_are_flagged() -> None:
    h = History()
    h.attempt("a", "r").acked_id = 1
    h.attempt("b", "r").acked_id = 2
    delivered(h, "r", (2, "b", False), (1, "a", False), (3, "ghost", False))
    verdict = check(h)
    assert verdict.unexpected == ["ghost"]
    assert verdict.out_of_order == ["r: 1 after 2"]
    h = History()
    h.attempt("a", "r").acked_id = 1
    delivered(h, "other", (1, "a", False))
    assert check(h).corrupted == [1]
