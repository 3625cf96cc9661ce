from __future__ import annotations

import os
from pathlib import Path

from hive_trio.lifecycle.backends.agent_log import AgentLog, rotated_path


async def test_appends_and_rotates_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    out = await AgentLog.open(path, max_bytes=10)
    await out.write(b"0123456")
    await out.write(b"789ABCDEF")  # 3 bytes fit, the rest starts a new file
    await out.aclose()
    assert rotated_path(path).read_bytes() == b"0123456789"
    assert path.read_bytes() == b"ABCDEF"
    assert out.rotations == 1


async def test_a_flood_never_grows_past_twice_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "flood.log"
    out = await AgentLog.open(path, max_bytes=4096)
    for _ in range(200):
        await out.write(b"x" * 1000)
    await out.aclose()
    assert path.stat().st_size <= 4096
    assert rotated_path(path).stat().st_size == 4096
    assert out.rotations >= 40


async def test_reopening_continues_the_size_count(tmp_path: Path) -> None:
    path = tmp_path / "b.log"
    first = await AgentLog.open(path, max_bytes=8)
    await first.write(b"12345")
    await first.aclose()
    second = await AgentLog.open(path, max_bytes=8)
    assert second.size == 5
    await second.write(b"6789")
    await second.aclose()
    assert rotated_path(path).read_bytes() == b"12345678"
    assert path.read_bytes() == b"9"


async def test_a_failing_disk_drops_output_instead_of_raising(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    out = await AgentLog.open(path, max_bytes=4)
    await out.write(b"1234")
    # The directory vanishes under the writer: rotation cannot rename, so logging stops quietly.
    path.unlink()
    (tmp_path / "c.log.1").mkdir()
    await out.write(b"5678")
    assert out.failed
    await out.write(b"more")
    await out.aclose()


def disk_usage(directory: Path) -> int:
    return sum(os.path.getsize(directory / name) for name in os.listdir(directory))


async def test_logs_sharing_a_budget_stay_within_its_total(tmp_path: Path) -> None:
    """Per-file limits alone let N agents hold 2 x N x max_bytes; a shared budget bounds them all (issue 13)."""
    from hive_trio.lifecycle.backends.agent_log import MIN_FILE_BYTES, LogBudget

    budget = LogBudget(1024 * 1024)
    logs = [await AgentLog.open(tmp_path / f"a{i}.log", max_bytes=1024 * 1024, budget=budget) for i in range(4)]
    assert all(log.limit == 128 * 1024 for log in logs)
    for _ in range(16):
        for log in logs:
            await log.write(b"z" * 65536)  # 1 MiB each: four times what the budget allows in all
    total = disk_usage(tmp_path)
    assert total <= 1024 * 1024, total
    for log in logs:
        await log.aclose()
    assert budget.file_limit(1024 * 1024) == 512 * 1024  # alone again, one log gets half of the total
    assert LogBudget(1000).file_limit(10**9) == MIN_FILE_BYTES
