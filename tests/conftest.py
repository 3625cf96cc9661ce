from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from hive_trio.core.coordinator import Coordinator, open_coordinator
from hive_trio.lifecycle.bare import BareLifecycle
from hive_trio.rules.config import Config


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory: unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ht-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config(short_tmp: Path) -> Config:
    return Config(
        state_dir=short_tmp / "state",
        runtime_dir=short_tmp / "run",
        dashboard_enabled=False,
        admin_group=None,
    )


class FakeWallClock:
    """Wall time that advances with trio's clock, so deadlines run under `autojump_clock`."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.start = start

    def __call__(self) -> float:
        return self.start + trio.current_time()


@pytest.fixture
def wall_clock() -> FakeWallClock:
    return FakeWallClock()


@pytest.fixture
async def coordinator(config: Config, wall_clock: FakeWallClock) -> AsyncIterator[Coordinator]:
    async with open_coordinator(config, lifecycle=BareLifecycle, clock=wall_clock) as coord:
        yield coord


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    """pytest-trio's `autojump_clock`, but it waits 50 ms of real idleness before jumping.

    A task waiting on `trio.to_thread` (every sqlite call) counts as blocked, so a zero threshold lets
    virtual time leap past a deadline while a commit is still in its worker thread. A short real
    threshold keeps jumps for when the hive is truly idle; timing stays fully virtual.
    """
    return trio.testing.MockClock(autojump_threshold=0.05)
