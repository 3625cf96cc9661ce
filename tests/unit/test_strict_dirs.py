"""Strict modes (issue 13): foreign or loose roots are refused, and no per-agent path is reached through a link.

We run as root in CI's container, so "owned by another user" is a real `chown 65534`. Every planted link
points at a victim file or dir outside the hive; each test checks the victim is untouched.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from hive_trio.lifecycle.backends.agent_log import AgentLog
from hive_trio.lifecycle.backends.process import _load_records, _write_record
from hive_trio.records import PidRecord
from hive_trio.rules.paths import HivePaths
from hive_trio.rules.strict_dirs import UnsafePath, ensure_base_dir, read_regular
from hive_trio.store.database import Database
from hive_trio.store.state_lock import StateLock

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def paths(tmp_path: Path) -> HivePaths:
    p = HivePaths(tmp_path / "state", tmp_path / "run")
    p.ensure_daemon_dirs()
    return p


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A directory outside the hive, world-writable, that a planted link points at."""
    v = tmp_path / "victim"
    v.mkdir()
    v.chmod(0o777)
    (v / "file").write_text("precious\n")
    (v / "file").chmod(0o644)
    return v


def untouched(victim: Path) -> None:
    assert mode_of(victim) == 0o777
    assert sorted(os.listdir(victim)) == ["file"]
    assert (victim / "file").read_text() == "precious\n"
    assert mode_of(victim / "file") == 0o644


# ------------------------------------------------------------------------------------------ roots


def test_fresh_roots_get_their_modes_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        p = HivePaths(tmp_path / "s", tmp_path / "r")
        p.ensure_daemon_dirs()
    finally:
        os.umask(old)
    assert mode_of(p.state_dir) == 0o700
    assert mode_of(p.runtime_dir) == 0o751
    assert mode_of(p.runtime_dir / "agents") == 0o751
    assert mode_of(p.pids_root) == 0o700


@needs_root
@pytest.mark.parametrize("which", ["state", "run"])
def test_a_root_owned_by_another_uid_is_refused_naming_the_path_and_the_fix(tmp_path: Path, which: str) -> None:
    (tmp_path / which).mkdir(mode=0o700)
    os.chown(tmp_path / which, NOBODY, NOBODY)
    p = HivePaths(tmp_path / "state", tmp_path / "run")
    with pytest.raises(UnsafePath) as info:
        p.ensure_daemon_dirs()
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / which) in message and f"owned by uid {NOBODY}" in message
    assert ("--state-dir" if which == "state" else "--runtime-dir") in message
    assert os.listdir(tmp_path / which) == []  # nothing was made inside it


@pytest.mark.parametrize("loose", [0o777, 0o770, 0o702])
def test_a_root_others_can_write_is_refused_and_left_alone(tmp_path: Path, loose: int) -> None:
    root = tmp_path / "run"
    root.mkdir()
    root.chmod(loose)
    with pytest.raises(UnsafePath, match=r"group or others can write it .*chmod go-w"):
        ensure_base_dir(root, 0o751, what="runtime dir", flag="--runtime-dir")
    assert mode_of(root) == loose


def test_an_existing_safe_root_is_used_and_not_chmodded(tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir()
    root.chmod(0o755)  # an operator's own `mkdir`: not ours to tighten, and safe
    ensure_base_dir(root, 0o700, what="state dir", flag="--state-dir")
    assert mode_of(root) == 0o755


@needs_root
def test_a_squatted_tmp_fallback_is_refused_not_taken_over(tmp_path: Path) -> None:
    """The `$TMPDIR/hive-trio-<uid>` fallback (and `up`'s) is guessable: a stranger may be there first."""
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    squat = sticky / "hive-trio-0"
    squat.mkdir()
    os.chown(squat, NOBODY, NOBODY)
    with pytest.raises(UnsafePath, match="owned by uid 65534"):
        ensure_base_dir(squat, 0o751, what="runtime dir", flag="--runtime-dir")
    # ... or a link the stranger planted there, pointing at a dir we own.
    squat.rmdir()
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    squat.symlink_to(mine)
    os.lchown(squat, NOBODY, NOBODY)
    with pytest.raises(UnsafePath, match="symbolic link owned by uid 65534"):
        ensure_base_dir(squat, 0o751, what="runtime dir", flag="--runtime-dir")
    assert os.listdir(mine) == []


def test_a_root_that_is_an_operators_own_link_is_followed(tmp_path: Path) -> None:
    target = tmp_path / "srv"
    target.mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(target)
    p = HivePaths(tmp_path / "state", tmp_path / "run")
    p.ensure_daemon_dirs()
    assert (target / "agents").is_dir()


# ------------------------------------------------------------------------------ per-agent paths


PER_AGENT_DIRS: dict[str, Callable[[HivePaths], Path]] = {
    "runtime agents/<name>": lambda p: p.agent_runtime("alpha"),
    "state agents/<name>": lambda p: p.agent_state_root("alpha"),
    "agents/<name>/state": lambda p: p.agent_notes("alpha"),
    "agents/<name>/claude": lambda p: p.agent_claude("alpha"),
    "agents/<name>/config": lambda p: p.agent_config("alpha"),
    "applied/<name>": lambda p: p.agent_applied("alpha"),
    "agents/<name>/mcp.sock": lambda p: p.agent_socket("alpha"),
    "logs/<name>.log": lambda p: p.agent_log("alpha"),
    "pids/<name>.json": lambda p: p.pid_record("alpha"),
}


@pytest.mark.parametrize("where", sorted(PER_AGENT_DIRS))
def test_a_link_planted_at_any_per_agent_path_is_refused_and_never_followed(
    paths: HivePaths, victim: Path, where: str
) -> None:
    target = PER_AGENT_DIRS[where](paths)
    if where not in ("runtime agents/<name>", "state agents/<name>"):
        # Its parent exists (an earlier run), so the link is found where it was planted.
        for parent in (paths.agent_runtime("alpha"), paths.agent_state_root("alpha")):
            parent.mkdir(mode=0o751 if parent.is_relative_to(paths.runtime_dir) else 0o700, exist_ok=True)
            parent.chmod(0o751 if parent.is_relative_to(paths.runtime_dir) else 0o700)
    target.symlink_to(victim if not target.suffix else victim / "file")
    with pytest.raises(UnsafePath, match="symbolic link"):
        paths.ensure_agent_dirs("alpha")
    untouched(victim)


def test_an_existing_per_agent_dir_of_another_mode_is_refused_not_chmodded(paths: HivePaths) -> None:
    notes = paths.agent_notes("alpha")
    notes.mkdir(parents=True)
    paths.agent_state_root("alpha").chmod(0o700)
    notes.chmod(0o777)
    with pytest.raises(UnsafePath, match=r"its mode is 0o777, .* never changes a directory it did not create"):
        paths.ensure_agent_dirs("alpha")
    assert mode_of(notes) == 0o777


@needs_root
def test_a_per_agent_dir_owned_by_another_uid_is_refused(paths: HivePaths) -> None:
    root = paths.agent_runtime("alpha")
    root.mkdir(mode=0o751)
    os.chown(root, NOBODY, NOBODY)
    with pytest.raises(UnsafePath, match="owned by uid 65534"):
        paths.ensure_agent_dirs("alpha")


def test_a_link_planted_at_a_daemon_dir_is_refused(tmp_path: Path, victim: Path) -> None:
    p = HivePaths(tmp_path / "state", tmp_path / "run")
    p.state_dir.mkdir(mode=0o700)
    p.logs_root.symlink_to(victim)
    with pytest.raises(UnsafePath, match="symbolic link"):
        p.ensure_daemon_dirs()
    untouched(victim)


def test_fresh_agent_dirs_are_made_with_their_modes(paths: HivePaths) -> None:
    paths.ensure_agent_dirs("alpha")
    paths.ensure_agent_dirs("alpha")  # and again: what we made has the right mode
    assert mode_of(paths.agent_runtime("alpha")) == 0o751
    assert mode_of(paths.agent_notes("alpha")) == 0o700
    assert mode_of(paths.agent_claude("alpha")) == 0o700


# ------------------------------------------------------------------------------ files


async def test_an_agent_log_is_never_appended_through_a_link(paths: HivePaths, victim: Path) -> None:
    paths.agent_log("alpha").symlink_to(victim / "file")
    with pytest.raises(UnsafePath, match="symbolic link"):
        await AgentLog.open(paths.agent_log("alpha"), max_bytes=1024)
    os.unlink(paths.agent_log("alpha"))
    os.link(victim / "file", paths.agent_log("alpha"))  # a hard link is refused too
    with pytest.raises(UnsafePath, match="hard link"):
        await AgentLog.open(paths.agent_log("alpha"), max_bytes=1024)
    untouched(victim)


def test_a_pid_record_is_written_and_read_without_following_links(paths: HivePaths, victim: Path) -> None:
    record = PidRecord(name="alpha", pid=1, pgid=1, boot_id="b", start_ticks=1, command="true")
    path = paths.pid_record("alpha")
    path.symlink_to(victim / "file")
    path.with_name(path.name + ".tmp").symlink_to(victim / "file")
    assert _load_records(paths.pids_root) == [(path, None)]  # unreadable through a link, not followed
    _write_record(path, record)
    untouched(victim)
    assert not path.is_symlink() and mode_of(path) == 0o600
    assert _load_records(paths.pids_root) == [(path, record)]


async def test_hive_db_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = await Database.open(tmp_path / "hive.db")
        try:
            await db.write(lambda conn: conn.execute("CREATE TABLE t(x)"))
            modes = {name: mode_of(tmp_path / name) for name in os.listdir(tmp_path)}
        finally:
            db.close()
    finally:
        os.umask(old)
    assert modes == {"hive.db": 0o600, "hive.db-wal": 0o600, "hive.db-shm": 0o600}


async def test_a_linked_hive_db_is_refused(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "hive.db").symlink_to(victim / "file")
    with pytest.raises(UnsafePath, match="symbolic link"):
        await Database.open(tmp_path / "hive.db")
    untouched(victim)


def test_a_linked_lock_file_is_refused(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "hive.lock").symlink_to(victim / "file")
    with pytest.raises(UnsafePath, match="symbolic link"):
        StateLock(tmp_path / "hive.lock").acquire()
    untouched(victim)


def test_a_fifo_planted_as_a_file_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.json")
    with pytest.raises(UnsafePath, match="not a plain file"):
        read_regular(tmp_path / "x.json")


def test_a_socket_path_that_is_a_link_is_not_replaced(paths: HivePaths, victim: Path) -> None:
    from hive_trio.sockets.unix_listener import SocketInUse, bind_unix_socket

    paths.ensure_agent_dirs("alpha")
    paths.agent_socket("alpha").symlink_to(victim / "file")
    with pytest.raises(SocketInUse, match="not a socket"):
        bind_unix_socket(paths.agent_socket("alpha"), mode=0o660)
    untouched(victim)
