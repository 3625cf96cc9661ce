"""Every benchmark in one run, one after the other on this machine, then one table of targets and ratios.

Runs, in order, each as its own process so none inherits another's heap or threads:
  bench_store.py      raw APSW commits (synchronous=FULL) and Broker.send, 1 caller and 32 (group commit)
  bench_send.py       raw APSW again, and durable sends end to end through an agent's MCP socket, 1 and 32 clients
  bench_mcp.py        tools/call round trips with the official SDK client (list_agents, one connection)
  bench_dashboard.py  dashboard fan-out to 1,000 websocket subscribers
  bench_agents.py     1,000 process agents in one daemon: memory and spawn time

Each prints its own details (kept in the output) and a `RESULT {json}` line, from which the table is made.
Ratios are taken against the raw APSW rate measured by the same script in the same run, on the same disk.

Usage: python scripts/bench_all.py [--quick] [--only store send mcp dashboard agents]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def benches(quick: bool) -> dict[str, list[str]]:
    seconds = "1" if quick else "5"
    repeat = "1" if quick else "3"
    return {
        "store": ["bench_store.py", "--seconds", seconds, "--repeat", repeat],
        "send": ["bench_send.py", "--seconds", seconds, "--repeat", repeat],
        "mcp": ["bench_mcp.py", "--seconds", seconds, "--repeat", repeat, "--connections", "1"],
        "dashboard": ["bench_dashboard.py", *(["--subscribers", "100", "--events", "10"] if quick else [])],
        "agents": ["bench_agents.py", "--agents", "100" if quick else "1000"],
    }


def run(name: str, argv: list[str]) -> list[dict[str, Any]]:
    print(f"\n===== {name}: {' '.join(argv)}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(HERE / argv[0]), *argv[1:]], stdout=subprocess.PIPE, text=True, cwd=HERE.parent
    )
    results = []
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("RESULT "):
            results.append(json.loads(line[len("RESULT ") :]))
        else:
            print(line, end="", flush=True)
    if process.wait() != 0:
        raise SystemExit(f"{argv[0]} failed with status {process.returncode}")
    print(f"===== {name} took {time.perf_counter() - started:.0f} s", flush=True)
    return results


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def table(found: dict[str, list[dict[str, Any]]]) -> list[str]:
    rows = ["| measure | result | ratio | target | verdict |", "|---|---|---|---|---|"]
    if found.get("store"):
        r = found["store"][0]
        rows.append(
            f"| raw APSW single-row commits, `synchronous=FULL` (store run) | {r['raw']:,.0f}/s | 1.00x | — | — |"
        )
        single, group = r["single"] / r["raw"], r["group"] / r["raw"]
        rows.append(
            f"| `Broker.send`, 1 caller | {r['single']:,.0f}/s | {single:.2f}x | ≥ 0.50x | {verdict(single >= 0.5)} |"
        )
        rows.append(
            f"| `Broker.send`, 32 callers, group commit (~{r['sends_per_commit']:.0f} per commit) "
            f"| {r['group']:,.0f}/s | {group:.2f}x | ≥ 5x | {verdict(group >= 5)} |"
        )
    if found.get("send"):
        r = found["send"][0]
        rows.append(f"| raw APSW single-row commits (send run) | {r['raw']:,.0f}/s | 1.00x | — | — |")
        for key, target in (("e2e_1", 0.4), ("e2e_32", 1.0)):
            if key in r:
                e2e = r[key]
                n = key.split("_")[1]
                ratio = e2e["rate"] / r["raw"]
                rows.append(
                    f"| MCP `send` end to end, {n} client{'s' if n != '1' else ''} (p50 {e2e['p50_ms']:.2f} ms) "
                    f"| {e2e['rate']:,.0f}/s | {ratio:.2f}x | ≥ {target:.1f}x | {verdict(ratio >= target)} |"
                )
    runs = [r for r in found.get("mcp", []) if r["connections"] == 1]
    if runs:  # one line per repeat: report the medians
        p50, p99 = statistics.median(r["p50_ms"] for r in runs), statistics.median(r["p99_ms"] for r in runs)
        rows.append(
            f"| MCP `{runs[0]['tool']}` round trip, SDK client, 1 connection (median of {len(runs)} runs) "
            f"| p50 {p50:.2f} ms (p99 {p99:.2f}) | — | p50 < 1 ms | {verdict(p50 < 1.0)} |"
        )
    if found.get("dashboard"):
        r = found["dashboard"][0]
        rows.append(
            f"| dashboard fan-out, {r['subscribers']} subscribers (stalled one: p99 {r['stalled_p99_ms']:.0f} ms) "
            f"| p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms | — | p99 < 100 ms | {verdict(r['p99_ms'] < 100)} |"
        )
    if found.get("agents"):
        r = found["agents"][0]
        rows.append(
            f"| {r['agents']} process agents in one daemon (spawned in {r['spawn_s']:.0f} s) "
            f"| {r['rss_mib']:.0f} MiB RSS | — | < 100 MB | {verdict(r['rss_mib'] * 1.048576 < 100)} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs and small counts: a smoke test, not figures")
    parser.add_argument("--only", nargs="+", choices=list(benches(False)), default=None)
    args = parser.parse_args()
    plan = benches(args.quick)
    found = {name: run(name, argv) for name, argv in plan.items() if args.only is None or name in args.only}
    print(f"\n## Summary ({time.strftime('%Y-%m-%d %H:%M')}, {'quick' if args.quick else 'full'} run)\n")
    print(
        f"Machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"{platform.platform()}, Python {platform.python_version()}\n"
    )
    print("\n".join(table(found)))


if __name__ == "__main__":
    main()
