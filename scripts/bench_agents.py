"""Benchmark: spawn N process agents in one hive, then report time taken and the daemon's memory.

Each spawn is the real thing: roster row, dirs, a git config repo with a starter commit, the applied
clone, the socket slot, the agent.toml check (`sh -n`), the child process with its log pipe and pid
record, the kick message and the `spawned` event. The agents run a trivial command (`exec sleep 3600`),
so what is measured is the daemon. Results go in docs/PERFORMANCE.md ("## Agents").

    .venv/bin/python scripts/bench_agents.py --agents 1000 --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import trio

from hive_trio.daemon import open_hive, raise_open_file_limit
from hive_trio.lifecycle import Lifecycle
from hive_trio.rules.config import Config


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def bench(agents: int, concurrency: int, root: Path) -> None:
    config = Config(
        state_dir=root / "state",
        runtime_dir=root / "run",
        dashboard_enabled=False,
        admin_group=None,
        agent_command="exec sleep 3600",
        synchronous="NORMAL",
    )
    names = [f"a{i:04d}" for i in range(agents)]
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, {platform.platform()}")
    print(f"agents={agents} concurrency={concurrency} rss_before={rss_mib():.1f} MiB fds_before={open_fds()}")
    t_open = time.perf_counter()
    async with open_hive(config) as hive:
        coord = hive.coordinator
        lifecycle = coord._lifecycle  # the benchmark counts running agents on the lifecycle itself
        assert isinstance(lifecycle, Lifecycle)
        await trio.sleep(1.0)
        idle_rss = rss_mib()
        print(f"open_hive: {time.perf_counter() - t_open:.2f} s, idle rss={idle_rss:.1f} MiB")
        limiter = trio.CapacityLimiter(concurrency)
        started = time.perf_counter()

        async def spawn(name: str) -> None:
            async with limiter:
                await coord.ops.spawn(name)

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(spawn, name)
        spawn_time = time.perf_counter() - started
        peak_spawning = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        running = sum(1 for n in names if lifecycle.run_of(n) is not None)
        print(
            f"spawned {running}/{agents} in {spawn_time:.1f} s ({agents / spawn_time:.1f} spawns/s, "
            f"{spawn_time / agents * 1000:.1f} ms each); registered={len(coord.registered_names())}; "
            f"peak rss while spawning: {peak_spawning:.1f} MiB"
        )
        await trio.sleep(1.0)
        rss_running = rss_mib()
        print(f"daemon rss with {running} agents running: {rss_running:.1f} MiB, open fds: {open_fds()}")
        statuses_at = time.perf_counter()
        rows = await coord.agent_statuses()
        print(f"agent_statuses() over {len(rows)} agents: {(time.perf_counter() - statuses_at) * 1000:.1f} ms")
        stop_at = time.perf_counter()
    print(f"graceful shutdown of {running} agents: {time.perf_counter() - stop_at:.2f} s, rss={rss_mib():.1f} MiB")
    t_open = time.perf_counter()
    async with open_hive(config) as hive:
        lifecycle = hive.coordinator._lifecycle
        assert isinstance(lifecycle, Lifecycle)
        back = sum(1 for n in names if lifecycle.run_of(n) is not None)
        print(
            f"reconcile after restart: {back}/{agents} running again in {time.perf_counter() - t_open:.1f} s, "
            f"rss={rss_mib():.1f} MiB"
        )
    print(f"max rss of the whole run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
    summary = {
        "agents": agents,
        "running": running,
        "rss_mib": rss_running,
        "idle_rss_mib": idle_rss,
        "added_mib": rss_running - idle_rss,
        "spawn_s": spawn_time,
    }
    print("RESULT " + json.dumps(summary), flush=True)  # for scripts/bench_all.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    raise_open_file_limit()
    root = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    try:
        trio.run(bench, args.agents, args.concurrency, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
