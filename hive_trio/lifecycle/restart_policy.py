"""When a crashed agent is restarted, and when it is given up on: OTP's restart intensity, sans-IO.

An Erlang/OTP supervisor allows at most `intensity` restarts within any `period` seconds; one more
crash inside that window means the child is broken, and restarting it again would only hide that.
Here the agent is then marked `failed` and waits for the operator. hive-c0re has no crash restart at
all (systemd restarts containers); this is new. The module is pure: it is told the time, never reads a
clock, and never starts or stops anything.
"""

from __future__ import annotations

import enum

import attrs


class Verdict(enum.Enum):
    RESTART = "restart"
    GIVE_UP = "give_up"


@attrs.frozen
class Decision:
    verdict: Verdict
    # Restarts inside the current window, counting this one when the verdict is RESTART.
    restarts_in_period: int
    intensity: int
    period: float

    @property
    def restart(self) -> bool:
        return self.verdict is Verdict.RESTART

    def describe(self) -> str:
        """A clause for a person, e.g. `restart 2 of 5 within 60 s`."""
        if self.restart:
            return f"restart {self.restarts_in_period} of {self.intensity} within {self.period:g} s"
        return (
            f"it crashed more than {self.intensity} time(s) within {self.period:g} s, "
            "so it is marked failed until the operator starts it again"
        )


@attrs.define
class RestartPolicy:
    intensity: int
    period: float
    # A list, not a deque: it holds at most `intensity` times, and an empty deque is ~600 bytes (one per
    # agent, kept for the daemon's life).
    _restarts: list[float] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        if self.intensity < 0:
            raise ValueError("intensity must not be negative")
        if self.period <= 0:
            raise ValueError("period must be positive")

    def on_crash(self, now: float) -> Decision:
        """The agent stopped unexpectedly at `now`: restart it, or give up on it."""
        while self._restarts and self._restarts[0] <= now - self.period:
            del self._restarts[0]
        if len(self._restarts) >= self.intensity:
            return Decision(Verdict.GIVE_UP, len(self._restarts), self.intensity, self.period)
        self._restarts.append(now)
        return Decision(Verdict.RESTART, len(self._restarts), self.intensity, self.period)

    def reset(self) -> None:
        """The operator (re)started the agent: it starts with a clean record."""
        self._restarts.clear()

    @property
    def recent_restarts(self) -> int:
        return len(self._restarts)
