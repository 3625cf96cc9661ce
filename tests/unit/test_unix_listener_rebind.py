"""Re-binding a path while its old server is still finishing (a re-registered agent under load)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hive_trio.sockets import unix_listener


@pytest.mark.timeout(10)
async def test_an_old_server_finishing_during_a_rebind_never_unlinks_the_fresh_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mcp.sock"
    old = await unix_listener.bind_unix_listener(path, mode=0o660)
    path.unlink()  # what unregister_agent does before the new registration binds
    real_bind = unix_listener.bind_unix_socket
    seen: list[bool] = []

    def bind_while_the_old_server_finishes(p: Path, **kw: object) -> object:
        result = real_bind(p, **kw)  # type: ignore[arg-type]
        # The old server's `finally` may run now, before the new binding is recorded. It must not still be
        # "the latest binding": then only the inode would stand between it and the fresh file, and the
        # kernel may hand the fresh file the old inode number.
        seen.append(unix_listener._latest.get(p) is old)
        seen.append(old.unlink_if_ours())
        return result

    monkeypatch.setattr(unix_listener, "bind_unix_socket", bind_while_the_old_server_finishes)
    fresh = await unix_listener.bind_unix_listener(path, mode=0o660)
    try:
        assert seen == [False, False]
        assert path.exists()
        assert fresh.unlink_if_ours() and not path.exists()
    finally:
        await old.listener.aclose()
        await fresh.listener.aclose()
