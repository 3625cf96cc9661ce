"""How long the question watchdog may sleep, and how it notices that the wall clock was stepped.

Deadlines are wall-clock times (`deadline_at`), because they must survive a restart, but trio sleeps on
the monotonic clock. A wall clock stepped forward (NTP, a suspended VM resuming, an operator's `date -s`)
would leave a deadline passed while the watchdog still sleeps out the old interval; hive-c0re's
in-process timers have the same blind spot. So no sleep is longer than `RECHECK_INTERVAL`, and each wake
compares how far the two clocks moved: a difference past `STEP_TOLERANCE` is a step, logged once.
Pure arithmetic: no trio, no database.
"""

from __future__ import annotations

import math
from typing import Final

import attrs

# A deadline passed by a forward step is resolved at most this late.
RECHECK_INTERVAL: Final = 5.0
# Scheduling jitter below this is not a step.
STEP_TOLERANCE: Final = 1.0


def watchdog_sleep(next_deadline: float | None, wall_now: float) -> float:
    """Seconds to sleep before the next look: to the next deadline, but never past `RECHECK_INTERVAL`.

    With no open deadline the watchdog sleeps until a new question rings it, since nothing can expire.
    """
    if next_deadline is None:
        return math.inf
    return min(max(0.0, next_deadline - wall_now), RECHECK_INTERVAL)


@attrs.define
class StepDetector:
    """Remembers one (wall, monotonic) reading; `step` says how far the wall clock jumped since."""

    wall: float | None = None
    monotonic: float = 0.0

    def step(self, wall: float, monotonic: float) -> float | None:
        """The wall clock's step since the last reading (seconds, signed), or None if it kept pace."""
        previous, self.wall = self.wall, wall
        elapsed, self.monotonic = monotonic - self.monotonic, monotonic
        if previous is None:
            return None
        drift = (wall - previous) - elapsed
        return drift if abs(drift) > STEP_TOLERANCE else None


__all__ = ["RECHECK_INTERVAL", "STEP_TOLERANCE", "StepDetector", "watchdog_sleep"]
