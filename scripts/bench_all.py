"""Every benchmark in one run, one after the other on this machine, then one table of targets and ratios.

Runs, in order, each as its own process so none inherits another's heap or threads:
  bench_store.py      raw APSW commits (synchronous=FULL) and Broker.send, 1 caller and 32 (group commit)
  bench_send.py       raw APSW again; send (1, 32 clients), list_agents, recv wake-up, this daemon and --before REV
  bench_send.py --slow-fsync-us   a slow fsync must not hurt an unrelated connection (commit on the loop)
  bench_mcp.py        tools/call round trips with the official SDK client (list_agents, one connection)
  bench_dashboard.py  dashboard fan-out to 1,000 websocket subscribers
  bench_agents.py     1,000 process agents in one daemon: memory and spawn time

Each prints its own details (kept in the output) and a `RESULT {json}` line, from which the table is made.
Ratios are taken against the raw APSW rate measured by the same script in the same run, on the same disk.

Usage: python scripts/bench_all.py [--quick] [--only store send slow_fsync mcp dashboard agents] [--before REV]
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


def benches(
    quick: bool, before: str, *, seconds_each: float | None = None, events: int | None = None
) -> dict[str, list[str]]:
    seconds = "1" if quick else "5"
    if seconds_each is not None:
        seconds = f"{seconds_each:g}"
    repeat = "1" if quick else "3"
    return {
        "store": ["bench_store.py", "--seconds", seconds, "--repeat", repeat],
        "send": ["bench_send.py", "--seconds", seconds, "--rounds", repeat, *(["--before", before] if before else [])],
        "slow_fsync": ["bench_send.py", "--slow-fsync-us", "20000", "--seconds", "2" if quick else "4"],
        "mcp": ["bench_mcp.py", "--seconds", seconds, "--repeat", repeat, "--connections", "1"],
        "dashboard": [
            "bench_dashboard.py",
            *(["--subscribers", "100", "--events", "10"] if quick else []),
            *(["--events", str(events)] if events is not None and not quick else []),
        ],
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


def spread(figure: dict[str, float]) -> str:
    return f"{figure['min']:.2f} / **{figure['med']:.2f}** / {figure['max']:.2f}x"


def cpu_rows(r: dict[str, Any]) -> list[str]:
    """CPU per call split into its parts (medians over rounds), before and after, as extra table rows."""
    rows = []
    for key in ("send_1", "send_32", "list_agents_1"):
        for label in ("before", "after"):
            figures = r.get(f"{label}.{key}")
            if figures is None:
                continue
            med = {k: v["med"] for k, v in figures.items()}
            rows.append(
                f"| CPU per call, `{key}`, {label}: daemon {med['daemon_us']:.0f} µs = trio thread "
                f"{med['loop_us']:.0f} (user {med['loop_user_us']:.0f} + sys {med['loop_sys_us']:.0f}) + sqlite "
                f"worker {med['workers_us']:.0f}; lean client {med['client_us']:.0f} µs | — | — | — | — |"
            )
    return rows


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
        raw = r["raw"]
        rows.append(
            f"| raw APSW single-row commits, FULL (send run; min / median / max of rounds) "
            f"| {raw['min']:,.0f} / {raw['med']:,.0f} / {raw['max']:,.0f}/s | 1.00x | — | — |"
        )
        for label in ("before", "after"):
            if f"{label}.send_1" not in r:
                continue
            tag = "" if label == "after" else " (before)"
            one, many = r.get(f"{label}.send_1"), r.get(f"{label}.send_32")
            if many:
                ratio = many["ratio"]
                rows.append(
                    f"| MCP `send`, 32 clients{tag} (p50 {many['p50_ms']['med']:.2f} ms) "
                    f"| {many['rate']['med']:,.0f}/s | {spread(ratio)} | ≥ 1.0x | {verdict(ratio['med'] >= 1.0)} |"
                )
            if one:
                ratio, p50 = one["ratio"], one["p50_ms"]["med"]
                ok = ratio["med"] >= 0.4 and p50 <= 0.5
                rows.append(
                    f"| MCP `send`, 1 client{tag} | {one['rate']['med']:,.0f}/s, p50 {p50:.2f} ms "
                    f"| {spread(ratio)} | ≥ 0.4x, p50 ≤ 0.5 ms | {verdict(ok)} |"
                )
            lst = r[f"{label}.list_agents_1"]["p50_ms"]["med"]
            rows.append(
                f"| MCP `list_agents`, 1 client{tag} | p50 {lst:.3f} ms | — | p50 ≤ 0.25 ms | {verdict(lst <= 0.25)} |"
            )
            wake = r[f"{label}.recv_wakeup"]
            ack = wake["ack_to_recv_p50_ms"]["med"]
            rows.append(
                f"| `send` committed → parked `recv` on another socket returns{tag} | p50 {ack:.2f} ms "
                f"(from the send's request: {wake['send_to_recv_p50_ms']['med']:.2f} ms) | — | p50 ≤ 0.5 ms "
                f"| {verdict(ack <= 0.5)} |"
            )
        rows.extend(cpu_rows(r))
    if found.get("slow_fsync"):
        r = found["slow_fsync"][0]["slow_fsync"]
        alone, busy = r["alone"]["p99_ms"], r["while_sending"]["p99_ms"]
        ok = busy <= max(2 * alone, alone + 1.0)
        rows.append(
            f"| fsync slowed by {r['fsync_delay_us'] / 1000:.0f} ms: `list_agents` p99 on another socket while one "
            f"sends | {busy:.2f} ms (alone {alone:.2f} ms) | — | not hurt (≤ 2x or +1 ms) | {verdict(ok)} |"
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
            f"| p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms | — | p99 < 50 ms | {verdict(r['p99_ms'] < 50)} |"
        )
        added = r["stalled_p99_ms"] - r["p99_ms"]
        rows.append(
            f"| dashboard fan-out: what a stalled subscriber adds to the p99 | {added:+.0f} ms | — "
            f"| nothing (≤ +10 %) | {verdict(r['stalled_p99_ms'] <= 1.1 * r['p99_ms'])} |"
        )
    if found.get("agents"):
        r = found["agents"][0]
        rows.append(
            f"| {r['agents']} process agents in one daemon (spawned in {r['spawn_s']:.0f} s) "
            f"| {r['rss_mib']:.0f} MiB RSS, {r['added_mib']:.1f} MiB over the idle {r['idle_rss_mib']:.0f} MiB | — "
            f"| adds ≤ 20 MiB | {verdict(r['added_mib'] <= 20)} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs and small counts: a smoke test, not figures")
    parser.add_argument("--only", nargs="+", choices=list(benches(False, "")), default=None)
    parser.add_argument(
        "--before",
        default="c26ef26",
        help="git revision whose daemon bench_send runs beside this one, interleaved ('' to skip); "
        "default: main before the faster MCP path",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="seconds per measured round of the store, send and mcp benches (default 5; 3 rounds each); "
        "--seconds 2 --events 30 makes a full-size run of about 4 minutes",
    )
    parser.add_argument("--events", type=int, default=None, help="dashboard events per case (default 60, at 2/s)")
    args = parser.parse_args()
    plan = benches(args.quick, args.before, seconds_each=args.seconds, events=args.events)
    found = {name: run(name, argv) for name, argv in plan.items() if args.only is None or name in args.only}
    used = " ".join(sys.argv[1:]) or "defaults"
    print(f"\n## Summary ({time.strftime('%Y-%m-%d %H:%M')}, {'quick' if args.quick else 'full'} run; {used})\n")
    print(
        f"Machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"{platform.platform()}, Python {platform.python_version()}\n"
    )
    print("\n".join(table(found)))


if __name__ == "__main__":
    main()
