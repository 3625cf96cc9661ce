"""A daemon killed with SIGKILL leaves its agents running; the next daemon stops them, then starts fresh ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from lifecycle_support import eventually, lifecycle_config, pid_alive

from hive_trio.daemon import open_hive
from hive_trio.lifecycle import Lifecycle
from hive_trio.lifecycle.backends.process import read_boot_id
from hive_trio.rules.paths import HivePaths

# Each agent is a shell with a background child: the group, not just the leader, must be stopped.
# `bg.pid` (in its notes dir) appears once the child is forked, so the test can wait on it by inotify.
TEMPLATE = "sleep 3600 & echo $! > bg.pid; exec sleep 3601"

DAEMON = """
import json, sys
from pathlib import Path
import trio
from hive_trio.rules.config import Config
from hive_trio.daemon import open_hive

async def main(root: str) -> None:
    config = Config(state_dir=Path(root) / "state", runtime_dir=Path(root) / "run", dashboard_enabled=False,
                    admin_group=None, agent_command=sys.argv[2])
    async with open_hive(config) as hive:
        coord = hive.coordinator
        pids = {}
        for name in ("alpha", "beta"):
            await coord.ops.spawn(name)
            pids[name] = coord.ops.run_of(name).pid
        await coord.ops.stop("beta")
        print(json.dumps(pids), flush=True)
        await trio.sleep_forever()

trio.run(main, sys.argv[1])
"""


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_reconcile_after_sigkill_stops_orphans_then_starts_fresh(short_tmp: Path) -> None:
    daemon = await trio.lowlevel.open_process(
        [sys.executable, "-c", DAEMON, str(short_tmp), TEMPLATE], stdout=subprocess.PIPE
    )
    try:
        assert daemon.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await daemon.stdout.receive_some(4096)
                assert chunk, "the daemon exited before it was ready"
                line += chunk
        pids = json.loads(line)
        alpha = pids["alpha"]
        notes = HivePaths(short_tmp / "state", short_tmp / "run").agent_notes("alpha")
        orphans = await eventually(
            lambda: (notes / "bg.pid").exists() and len(group_members(alpha)) == 2 and group_members(alpha),
            watch=[notes],
            what="alpha's group",
        )
    finally:
        daemon.send_signal(signal.SIGKILL)
        await daemon.wait()
    # The agents outlived their daemon (their own session), as they would after a real crash.
    assert all(pid_alive(p) for p in orphans)
    assert not pid_alive(pids["beta"]), "beta was stopped before the crash"
    config = lifecycle_config(short_tmp, agent_command=TEMPLATE)
    async with open_hive(config) as hive:
        coord = hive.coordinator
        lifecycle = coord.ops
        assert isinstance(lifecycle, Lifecycle)
        # Reconcile stopped every process of the old group before starting a fresh alpha.
        assert not any(pid_alive(p) for p in orphans)
        fresh = lifecycle.run_of("alpha")
        assert fresh is not None and fresh.pid not in orphans
        assert lifecycle.run_of("beta") is None, "an operator stop survives a daemon crash"
        assert coord.is_registered("alpha") and coord.is_registered("beta")
        record = json.loads(coord.paths.pid_record("alpha").read_text())
        assert record["pid"] == fresh.pid
        assert not coord.paths.pid_record("beta").exists()


async def test_stale_and_foreign_pid_records_are_dropped_untouched(short_tmp: Path) -> None:
    """A record from another boot, or whose pid now belongs to someone else, must never be signalled."""
    config = lifecycle_config(short_tmp)
    bystander = await trio.lowlevel.open_process(["sleep", "3600"], start_new_session=True)
    try:
        pids_root = config.runtime_dir / "pids"
        pids_root.mkdir(parents=True)
        boot = read_boot_id()
        (pids_root / "ghost.json").write_text(
            json.dumps(
                {
                    "name": "ghost",
                    "pid": bystander.pid,
                    "pgid": bystander.pid,
                    "boot_id": "other-boot",
                    "start_ticks": 1,
                    "command": "x",
                }
            )
        )
        (pids_root / "reused.json").write_text(
            json.dumps(
                {
                    "name": "reused",
                    "pid": bystander.pid,
                    "pgid": bystander.pid,
                    "boot_id": boot,
                    "start_ticks": 1,
                    "command": "x",
                }
            )
        )
        (pids_root / "garbage.json").write_text("{not json")
        async with open_hive(config):
            pass
        assert pid_alive(bystander.pid)
        assert list(pids_root.iterdir()) == []
    finally:
        bystander.kill()
        await bystander.wait()
