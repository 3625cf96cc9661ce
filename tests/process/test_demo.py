"""`hive-trio up` as a user runs it (`python -m hive_trio up` in a fresh directory), watched through its
database and pid records: agents running, messages flowing, a question and an approval pending."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import apsw
import pytest
import trio
from lifecycle_support import eventually, pid_alive

from hive_trio.cli import embedded_runtime_dir

EXAMPLES = ("alice", "bob", "carol")


def hive_facts(db_path: Path) -> dict[str, int]:
    if not db_path.exists():
        return {}
    conn = apsw.Connection(str(db_path))
    conn.setbusytimeout(2000)
    try:
        names = ",".join(f"'{n}'" for n in EXAMPLES)
        return {
            "agents": conn.execute(f"SELECT count(*) FROM agents WHERE name IN ({names})").fetchone()[0],
            "chatter": conn.execute(
                f"SELECT count(*) FROM messages WHERE sender IN ({names}) AND recipient IN ({names})"
            ).fetchone()[0],
            "questions": conn.execute(
                "SELECT count(*) FROM questions WHERE answer IS NULL AND target IS NULL AND deadline_at IS NOT NULL"
            ).fetchone()[0],
            "approvals": conn.execute(
                "SELECT count(*) FROM approvals WHERE status = 'pending' AND kind = 'apply_commit'"
            ).fetchone()[0],
            "talking": conn.execute(
                f"SELECT count(*) FROM agents WHERE name IN ({names}) AND status_text IS NOT NULL"
            ).fetchone()[0],
        }
    except apsw.Error:
        return {}
    finally:
        conn.close()


def alive_units(run_dir: Path) -> list[str]:
    alive = []
    for name in (*EXAMPLES, "manager"):
        try:
            record = json.loads((run_dir / "pids" / f"{name}.json").read_text())
        except (FileNotFoundError, ValueError):
            continue
        if pid_alive(record["pid"]):
            alive.append(name)
    return alive


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_hive_trio_up_brings_a_living_hive(short_tmp: Path) -> None:
    run_dir = embedded_runtime_dir(short_tmp / "hive-state")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
    env["HIVE_TRIO_ADMIN_GROUP"] = ""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "hive_trio", "up", "--dashboard", "127.0.0.1:0"],
        cwd=str(short_tmp),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = bytearray()

    async def collect() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.receive_some(65536):
            output.extend(chunk)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect)
            db_path = short_tmp / "hive-state" / "hive.db"

            def living() -> bool:
                facts = hive_facts(db_path)
                return (
                    facts.get("agents") == 3
                    and facts.get("chatter", 0) >= 1
                    and facts.get("questions", 0) >= 1
                    and facts.get("approvals", 0) >= 1
                    and facts.get("talking") == 3
                    and len(alive_units(run_dir)) == 4
                )

            # Everything within 10 seconds of typing the command.
            await eventually(
                living,
                # short_tmp too: the other two do not exist yet, and only an existing directory is watched.
                watch=[short_tmp, short_tmp / "hive-state", run_dir / "pids"],
                within=10,
                what=f"a living hive; output so far:\n{output.decode()}",
            )
            assert b"hive-trio is up" in output and b"try these in another terminal" in output
            pids = [json.loads((run_dir / "pids" / f"{n}.json").read_text())["pid"] for n in (*EXAMPLES, "manager")]
            proc.send_signal(signal.SIGINT)
            with trio.fail_after(20):
                await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output.decode()
    assert not any(pid_alive(p) for p in pids), "Ctrl-C stops the agents with the hive"
