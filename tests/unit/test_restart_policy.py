from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hive_trio.lifecycle.restart_policy import RestartPolicy, Verdict


def test_allows_intensity_restarts_within_the_period_then_gives_up() -> None:
    policy = RestartPolicy(intensity=3, period=60.0)
    verdicts = [policy.on_crash(t).verdict for t in (0.0, 1.0, 2.0, 3.0)]
    assert verdicts == [Verdict.RESTART, Verdict.RESTART, Verdict.RESTART, Verdict.GIVE_UP]


def test_restarts_outside_the_window_are_forgotten() -> None:
    policy = RestartPolicy(intensity=2, period=10.0)
    assert policy.on_crash(0.0).restart
    assert policy.on_crash(5.0).restart
    # 0.0 has left the window by 10.0 (it is exactly `period` old), so one slot is free again.
    decision = policy.on_crash(10.0)
    assert decision.restart
    assert decision.restarts_in_period == 2
    assert not policy.on_crash(11.0).restart


def test_zero_intensity_never_restarts() -> None:
    decision = RestartPolicy(intensity=0, period=1.0).on_crash(0.0)
    assert decision.verdict is Verdict.GIVE_UP
    assert "marked failed" in decision.describe()


def test_reset_clears_the_record() -> None:
    policy = RestartPolicy(intensity=1, period=60.0)
    assert policy.on_crash(0.0).restart
    assert not policy.on_crash(1.0).restart
    policy.reset()
    assert policy.recent_restarts == 0
    assert policy.on_crash(2.0).restart


def test_describe_counts_for_a_person() -> None:
    policy = RestartPolicy(intensity=5, period=60.0)
    policy.on_crash(0.0)
    assert policy.on_crash(1.0).describe() == "restart 2 of 5 within 60 s"


@pytest.mark.parametrize(("intensity", "period"), [(-1, 1.0), (1, 0.0), (1, -5.0)])
def test_refuses_nonsense(intensity: int, period: float) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(intensity=intensity, period=period)


@given(
    intensity=st.integers(min_value=0, max_value=6),
    period=st.floats(min_value=0.5, max_value=100.0),
    gaps=st.lists(st.floats(min_value=0.0, max_value=50.0), max_size=40),
)
def test_never_more_than_intensity_restarts_in_any_window(intensity: int, period: float, gaps: list[float]) -> None:
    """The OTP invariant: within any window of `period` seconds, at most `intensity` restarts happen."""
    policy = RestartPolicy(intensity=intensity, period=period)
    now = 0.0
    restarted: list[float] = []
    for gap in gaps:
        now += gap
        if policy.on_crash(now).restart:
            restarted.append(now)
    for t in restarted:
        assert sum(1 for u in restarted if t - period < u <= t) <= intensity
