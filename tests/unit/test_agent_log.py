from __future__ import annotations

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
