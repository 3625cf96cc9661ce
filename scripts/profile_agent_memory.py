"""Where the daemon's bytes per agent go: tracemalloc and object counts over N process agents.

Spawns N process agents (`exec sleep 3600`) in one in-process hive, as `bench_agents.py` does, with
tracemalloc started once the hive is idle. It prints the Python heap the agents added, grouped three ways
(by package, by the allocating file:line, by the first hive_trio frame that led to it), the objects added
by type, the trio tasks and fds per agent, and RSS. Results go in docs/PERFORMANCE.md ("Memory").

    .venv/bin/python scripts/profile_agent_memory.py --agents 1000 [--sockets-only]

`--sockets-only` registers sockets (roster row + socket slot) instead of spawning processes, as
`bench_socket_memory.py` measures. tracemalloc slows spawning down about twice and adds its own memory,
so RSS here is not the benchmark's figure: use `bench_agents.py` for that.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import platform
import re
import shutil
import tempfile
import time
import tracemalloc
from functools import partial
from pathlib import Path

import trio

from hive_trio.daemon import open_hive, raise_open_file_limit
from hive_trio.rules.config import Config

FRAMES = 32
_SITE = re.compile(r"/site-packages/([^/]+)")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def package_of(filename: str) -> str:
    if "/hive_trio/" in filename:
        return "hive_trio." + filename.rsplit("/hive_trio/", 1)[1].split("/")[0].removesuffix(".py")
    m = _SITE.search(filename)
    if m:
        return m.group(1).removesuffix(".py")
    if filename.startswith("<"):
        return filename
    return "stdlib:" + Path(filename).name


def short(filename: str) -> str:
    for marker in ("/site-packages/", "/hive_trio/", "/lib/python3.11/"):
        if marker in filename:
            head = "hive_trio/" if marker == "/hive_trio/" else ""
            return head + filename.rsplit(marker, 1)[1]
    return filename


def own_frame(tb: tracemalloc.Traceback, *, innermost: bool) -> str:
    # A Traceback lists frames oldest first. The innermost hive_trio frame is the line of ours that
    # allocated (or called what did); the outermost is the task of ours it belongs to.
    frames = reversed(tb) if innermost else iter(tb)
    for frame in frames:
        if "/hive_trio/" in frame.filename:
            return f"{short(frame.filename)}:{frame.lineno}"
    return "(no hive_trio frame)"


def task_count() -> int:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    seen = 0
    stack = [root]
    while stack:
        task = stack.pop()
        seen += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return seen


def type_counts() -> collections.Counter[str]:
    return collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def table(title: str, rows: list[tuple[str, int, int]], agents: int, limit: int) -> None:
    print(f"\n{title}")
    print(f"| {'where':<70} | {'KiB':>9} | {'B/agent':>8} | {'blocks':>8} |")
    for where, size, count in rows[:limit]:
        print(f"| {where[:70]:<70} | {size / 1024:>9.1f} | {size / agents:>8.0f} | {count:>8} |")


def grouped(stats: list[tracemalloc.StatisticDiff], key: str) -> list[tuple[str, int, int]]:
    sizes: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()
    for s in stats:
        frame = s.traceback[-1]  # the allocating frame (a Traceback is oldest first)
        if key == "package":
            k = package_of(frame.filename)
        elif key == "line":
            k = f"{short(frame.filename)}:{frame.lineno}"
        else:
            k = own_frame(s.traceback, innermost=key == "inner")
        sizes[k] += s.size_diff
        counts[k] += s.count_diff
    return [(k, v, counts[k]) for k, v in sizes.most_common()]


async def profile(agents: int, root: Path, *, sockets_only: bool, limit: int) -> None:
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
    async with open_hive(config) as hive:
        coord = hive.coordinator
        await trio.sleep(1.0)
        gc.collect()
        rss0, fds0, tasks0 = rss_mib(), len(os.listdir("/proc/self/fd")), task_count()
        types0 = type_counts()
        tracemalloc.start(FRAMES)
        before = tracemalloc.take_snapshot()
        limiter = trio.CapacityLimiter(8)
        started = time.perf_counter()

        async def add(name: str) -> None:
            async with limiter:
                if sockets_only:
                    await coord.register_agent(name)
                else:
                    await coord.ops.spawn(name)

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(add, name)
        took = time.perf_counter() - started
        await trio.sleep(1.0)
        gc.collect()
        after = tracemalloc.take_snapshot()
        traced_added = sum(s.size for s in after.statistics("filename")) - sum(
            s.size for s in before.statistics("filename")
        )
        tracemalloc.stop()
        gc.collect()
        rss1, fds1, tasks1 = rss_mib(), len(os.listdir("/proc/self/fd")), task_count()
        types1 = type_counts()
        what = "registered sockets" if sockets_only else "process agents"
        print(f"{agents} {what} in {took:.1f} s")
        print(
            f"traced Python heap added: {traced_added / 2**20:.2f} MiB ({traced_added / agents / 1024:.1f} KiB/agent); "
            f"RSS {rss0:.1f} -> {rss1:.1f} MiB (with tracemalloc's own overhead)"
        )
        print(
            f"trio tasks {tasks0} -> {tasks1} ({(tasks1 - tasks0) / agents:.2f}/agent); "
            f"fds {fds0} -> {fds1} ({(fds1 - fds0) / agents:.2f}/agent)"
        )
        stats = after.compare_to(before, "traceback")
        table("by package (allocating frame)", grouped(stats, "package"), agents, limit)
        table("by file:line (allocating frame)", grouped(stats, "line"), agents, limit)
        table("by the innermost hive_trio frame on the stack", grouped(stats, "inner"), agents, limit)
        table("by the outermost hive_trio frame (the task of ours)", grouped(stats, "outer"), agents, limit)
        added = types1 - types0
        print("\nobjects added, by type (count per agent)")
        for name, n in added.most_common(limit):
            print(f"| {name:<60} | {n:>8} | {n / agents:>6.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--sockets-only", action="store_true")
    parser.add_argument("--limit", type=int, default=30)
    args = parser.parse_args()
    raise_open_file_limit()
    root = Path(tempfile.mkdtemp(prefix="profile-mem-", dir="/tmp"))
    try:
        trio.run(partial(profile, args.agents, root, sockets_only=args.sockets_only, limit=args.limit))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
