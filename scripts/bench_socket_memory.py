"""RSS added by N registered agents (roster row + socket slot, no process) in one in-process hive.

.venv/bin/python scripts/bench_socket_memory.py --agents 1000
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import tempfile
from pathlib import Path

import trio

from hive_trio.daemon import open_hive, raise_open_file_limit
from hive_trio.rules.config import Config


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(agents: int, root: Path) -> dict[str, float]:
    config = Config(
        state_dir=root / "state",
        runtime_dir=root / "run",
        dashboard_enabled=False,
        admin_group=None,
        agent_command="exec sleep 3600",
        synchronous="OFF",
    )
    async with open_hive(config) as hive:
        await trio.sleep(0.5)
        gc.collect()
        idle = rss_mib()
        for i in range(agents):
            await hive.coordinator.register_agent(f"a{i:04d}")
        await trio.sleep(0.5)
        gc.collect()
        registered = rss_mib()
    return {"agents": agents, "idle_mib": idle, "registered_mib": registered, "added_mib": registered - idle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    args = parser.parse_args()
    raise_open_file_limit()
    root = Path(tempfile.mkdtemp(prefix="bench-sockets-", dir="/tmp"))
    try:
        result = trio.run(measure, args.agents, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    added = result["added_mib"]
    print(
        f"{args.agents} registered sockets: idle {result['idle_mib']:.1f} MiB -> {result['registered_mib']:.1f} MiB, "
        f"+{added:.1f} MiB ({added * 1024 / args.agents:.1f} KiB each)"
    )
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
