"""Where the daemon's trio thread spends a `tools/call`: py-spy samples attributed to packages.

Starts a daemon as `bench_send.py` does (its own process, idle process agents), then for each load
(`send` on 1 connection, `send` on 32, `list_agents` on 1) records the daemon with
`py-spy record --format raw --threads --rate 200` while the lean client drives it. Each sample of the
trio thread goes to the first category found scanning from the leaf up (as the performance study's
section 5 did); a category's share times the trio thread's CPU per call, measured from /proc in the
same run, gives its µs per call. py-spy slows the daemon by 10-20 %: compare shares, not the absolute
figures, with an unprofiled `bench_send.py` run.

Usage: python scripts/profile_send.py [--seconds 8] [--loads send_1 send_32 list_agents_1] [--keep DIR]
       python scripts/profile_send.py --summarize RAW_FILE --cpu-us 180
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_send import blocking_burst, epoll_burst, list_request, send_request, start_hive

from hive_trio.testing import short_temp_dir

# (category, path fragments or function names that place a frame in it). Order matters only between
# categories whose fragments could both match one frame; the leaf-most matching frame wins.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("hive transport (sockets/mcp/transport, rules/framing)", ("sockets/mcp/transport", "rules/framing")),
    ("hive MCP lane (sockets/mcp/server)", ("sockets/mcp/server",)),
    ("hive tools (sockets/mcp/tools)", ("sockets/mcp/tools",)),
    ("hive coordinator, hub, bells (core/)", ("hive_trio/core/",)),
    ("hive store: broker, Database (store/)", ("hive_trio/store/",)),
    ("hive records/rules (records/, rules/)", ("hive_trio/records/", "hive_trio/rules/")),
    ("hive other", ("hive_trio/",)),
    ("cattrs/attrs", ("cattrs/", "/attr/", "/attrs/")),
    ("SDK: dispatcher (jsonrpc_dispatcher)", ("mcp/shared/jsonrpc_dispatcher",)),
    ("SDK: runner, context, connection, session", ("mcp/server/", "mcp/shared/")),
    ("SDK: mcp_types", ("mcp_types/",)),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("anyio memory streams", ("anyio/streams/memory",)),
    ("anyio trio backend, anyio core", ("anyio/",)),
    ("trio to_thread (trio side)", ("trio/_threads",)),
    ("trio epoll", ("_io_epoll",)),
    ("trio socket wrappers, syscalls", ("trio/_socket", "trio/_highlevel_socket")),
    ("trio scheduler, cancel scopes, sync", ("trio/_core", "trio/_sync", "trio/lowlevel", "trio/_")),
    ("outcome", ("outcome/",)),
    ("apsw (on this thread)", ("apsw",)),
    ("stdlib json", ("json/",)),
    ("stdlib contextlib, typing, contextvars, other", ("python3", "<frozen", "lib/python")),
]
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def category_of(stack: list[str]) -> str:
    for frame in reversed(stack):  # the leaf is last in py-spy's raw (collapsed) format
        match = FRAME.match(frame.strip())
        where = match.group("file") if match else frame
        for name, fragments in CATEGORIES:
            if any(f in where for f in fragments):
                return name
    return "other"


def read_samples(path: Path) -> dict[str, list[tuple[list[str], int]]]:
    """Samples by thread: py-spy's raw format is `thread (id);frame;frame... count` per line."""
    threads: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    for line in path.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text:
            continue
        parts = stack_text.split(";")
        threads[parts[0]].append((parts[1:], int(count)))
    return threads


def trio_thread(threads: dict[str, list[tuple[list[str], int]]]) -> str:
    """The thread whose stacks run trio's scheduler."""

    def score(name: str) -> int:
        return sum(n for stack, n in threads[name] if any("unrolled_run" in f for f in stack))

    return max(threads, key=score)


def summarize(path: Path, cpu_us: float) -> list[tuple[str, float, float]]:
    threads = read_samples(path)
    name = trio_thread(threads)
    totals: collections.Counter[str] = collections.Counter()
    for stack, count in threads[name]:
        totals[category_of(stack)] += count
    all_samples = sum(totals.values())
    return [(cat, n / all_samples, n / all_samples * cpu_us) for cat, n in totals.most_common()]


def inclusive(path: Path, needles: list[str]) -> dict[str, float]:
    """Share of the trio thread's samples with a frame matching each needle on the stack."""
    threads = read_samples(path)
    samples = threads[trio_thread(threads)]
    total = sum(n for _, n in samples)
    return {needle: sum(n for s, n in samples if any(needle in f for f in s)) / total for needle in needles}


def leaves(path: Path, top: int = 15) -> list[tuple[str, float]]:
    threads = read_samples(path)
    samples = threads[trio_thread(threads)]
    total = sum(n for _, n in samples)
    counter: collections.Counter[str] = collections.Counter()
    for stack, n in samples:
        if stack:
            counter[stack[-1].strip()] += n
    return [(frame, n / total) for frame, n in counter.most_common(top)]


def print_table(label: str, rows: list[tuple[str, float, float]], cpu_us: float) -> None:
    print(f"\n{label}: trio thread {cpu_us:.0f} µs/call under py-spy")
    print("| category | share | µs/call |\n|---|---:|---:|")
    for cat, share, us in rows:
        print(f"| {cat} | {share * 100:.1f} % | {us:.0f} |")


INCLUSIVE = [
    "receive (hive_trio/sockets/mcp/transport",
    "send (hive_trio/sockets/mcp/transport",
    "_handle_request",
    "_on_request",
    "__call__ (hive_trio/sockets/mcp/server",
    "run_tool",
    "call (hive_trio/sockets/mcp/tools",
    "send (hive_trio/core/coordinator",
    "emit (",
    "write (hive_trio/store/database",
    "_write_result",
    "_dispatch_request",
    "decode_line",
    "encode (hive_trio/sockets/mcp/transport",
    "get_events",
    "_serialize",
]


async def record(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with short_temp_dir("hp-") as directory:
        manager, hive = await start_hive("profile", directory, {})
        try:
            for load in args.loads:
                raw = out / f"{load}.txt"
                command = [args.py_spy, "record", "--pid", str(hive.pid), "--format", "raw", "--threads"]
                command += ["--rate", "200", "--duration", str(int(args.seconds) + 1), "-o", str(raw)]
                if args.nonblocking:
                    command.append("--nonblocking")
                if args.gil:
                    command.append("--gil")
                spy = await trio.lowlevel.open_process(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                await trio.sleep(0.5)
                if load == "send_1":
                    figures = await trio.to_thread.run_sync(
                        blocking_burst, hive.senders[0], hive.pid, args.seconds, send_request
                    )
                elif load == "send_32":
                    figures = await trio.to_thread.run_sync(epoll_burst, hive.senders, hive.pid, args.seconds, 32)
                elif load == "list_agents_1":
                    figures = await trio.to_thread.run_sync(
                        blocking_burst, hive.senders[1], hive.pid, args.seconds, list_request
                    )
                else:
                    raise SystemExit(f"unknown load {load!r}")
                await spy.wait()
                results[load] = (raw, figures)
        finally:
            await manager.__aexit__(None, None, None)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--loads", nargs="+", default=["send_1", "send_32", "list_agents_1"])
    parser.add_argument("--keep", type=Path, default=None, help="keep the raw py-spy files here")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"))
    parser.add_argument("--nonblocking", action="store_true", help="py-spy --nonblocking (less overhead)")
    parser.add_argument(
        "--gil", action="store_true", help="py-spy --gil: only samples holding the GIL (Python CPU, no syscalls)"
    )
    parser.add_argument("--summarize", type=Path, default=None, help="only summarize this raw file")
    parser.add_argument("--cpu-us", type=float, default=100.0, help="with --summarize: trio-thread µs per call")
    args = parser.parse_args()
    if args.summarize:
        print_table(str(args.summarize), summarize(args.summarize, args.cpu_us), args.cpu_us)
        return
    out = args.keep or Path(tempfile.mkdtemp(prefix="profile-send-"))
    out.mkdir(parents=True, exist_ok=True)
    results = trio.run(record, args, out)
    for load, (raw, figures) in results.items():
        print_table(
            f"{load} ({figures['rate']:.0f}/s, p50 {figures['p50_ms']:.2f} ms)",
            summarize(raw, figures["loop_us"]),
            figures["loop_us"],
        )
        print("inclusive: " + ", ".join(f"{k} {v * 100:.1f} %" for k, v in inclusive(raw, INCLUSIVE).items()))
        print("top leaves: " + "; ".join(f"{f} {s * 100:.1f} %" for f, s in leaves(raw)))
    print(f"\nraw files in {out}")


if __name__ == "__main__":
    main()
