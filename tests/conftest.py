"""The project's own fixtures, built on the shipped `hive_trio.testing` plugin (loaded by its entry point).

Nothing here re-implements the plugin: short temp dirs, the wall clock that follows trio's clock and
the autojump clock with a real-idleness threshold are the plugin's, so this suite tests them too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio.testing

from hive_trio.core.coordinator import Coordinator, open_coordinator
from hive_trio.lifecycle.bare import BareLifecycle
from hive_trio.rules.config import Config
from hive_trio.testing import TrioWallClock

# Every test's wall clock starts here, so stored times are the same from run to run.
WALL_CLOCK_START = 1_800_000_000.0


@pytest.fixture
def short_tmp(hive_dir: Path) -> Path:
    """A short directory (the plugin's `hive_dir`): unix socket paths must stay under 108 bytes."""
    return hive_dir


@pytest.fixture
def config(short_tmp: Path) -> Config:
    return Config(
        state_dir=short_tmp / "state",
        runtime_dir=short_tmp / "run",
        dashboard_enabled=False,
        admin_group=None,
    )


@pytest.fixture
async def wall_clock() -> TrioWallClock:
    # Async, so it is made inside the test's trio run: the clock counts from the run's start.
    return TrioWallClock(start=WALL_CLOCK_START)


@pytest.fixture
async def coordinator(config: Config, wall_clock: TrioWallClock) -> AsyncIterator[Coordinator]:
    async with open_coordinator(config, lifecycle=BareLifecycle, clock=wall_clock) as coord:
        yield coord


@pytest.fixture
def autojump_clock(hive_autojump_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    """pytest-trio's `autojump_clock` name, served by the plugin's `hive_autojump_clock` (a 50 ms threshold)."""
    return hive_autojump_clock
