"""Wake latency of real Claude Code agents: operator `send` returns -> the model receives the agent's request.

Runs an in-process hive, a scripted Messages API server, and two real agents on it, each a
`hive-trio agent` process with the Claude Code CLI bundled in claude-agent-sdk:
- `warm`: `--runtime claude` (one long-lived SDK session; a turn is one query);
- `cold`: `--runtime command --turn-command 'claude -p --continue ...'` (hyperhive's way: a CLI start per turn).
For each turn the operator sends over host.sock; the latency is from that call returning to the scripted
model receiving the first request of the turn. Then the script waits for the turn to be acked. It also
prints the RSS of the harness process beside the CLI's (and its MCP bridge's).

    .venv/bin/python scripts/bench_agents_wake.py [--turns 50] [--cold-turns 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from hive_trio.agent import scripted_model as sm
from hive_trio.testing import InProcessHive, open_test_hive, short_temp_dir


def bundled_cli() -> str:
    import claude_agent_sdk

    return str(Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude")


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, by the parent pids in /proc (any thread may have started a child)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def process_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in argv if a)
    if "_bundled/claude" in argv[0].decode(errors="replace") or text.startswith("claude"):
        return "claude CLI"
    if "mcp-bridge" in text:
        return "mcp-bridge"
    return Path(argv[0].decode(errors="replace")).name if argv and argv[0] else "?"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def start_agent(hive: InProcessHive, root: Path, name: str, argv: list[str], env: dict[str, str]) -> trio.Process:
    await hive.add_agent(name)
    state = root / "agents" / name
    (state / "claude").mkdir(parents=True)
    child_env = {
        **os.environ,
        **env,
        "HIVE_AGENT": name,
        "HIVE_SOCKET": str(hive.socket_path(name)),
        "HIVE_STATE_DIR": str(state),
        "CLAUDE_CONFIG_DIR": str(state / "claude"),
    }
    log = await trio.to_thread.run_sync(lambda: (root / f"{name}.log").open("wb"))
    return await trio.lowlevel.open_process(argv, env=child_env, stdout=log, stderr=subprocess.STDOUT, cwd=str(state))


async def acked(hive: InProcessHive, mid: int) -> bool:
    rows = await hive.coordinator.recent_messages(None, limit=500)
    return any(m.id == mid and m.acked_at is not None for m in rows)


async def measure(hive: InProcessHive, model: sm.ScriptedModel, name: str, turns: int) -> list[float]:
    latencies: list[float] = []
    for i in range(-1, turns):  # turn -1 warms up (and takes the start-up note along)
        marker = f"wake {name} {i}"
        seen = len(model.requests)
        result = await hive.host("send", to=name, body=marker)
        sent = trio.current_time()
        await model.wait_for(lambda rs, m=marker, s=seen: any(r.is_main and m in r.text() for r in rs[s:]))
        first = next(r for r in model.requests[seen:] if r.is_main and marker in r.text())
        if i >= 0:
            latencies.append(first.received_at - sent)
        mid = result.get("id") or result.get("ids", [None])[0]
        with trio.fail_after(60):
            while mid is not None and not await acked(hive, int(mid)):  # noqa: ASYNC110 (no event for an ack)
                await trio.sleep(0.01)
    return latencies


def report(label: str, values: list[float]) -> None:
    ms = [v * 1000 for v in values]
    print(
        f"{label:<34} n={len(ms):>3}  p50={statistics.median(ms):7.1f} ms  p99={percentile(ms, 0.99):7.1f} ms  "
        f"min={min(ms):6.1f}  max={max(ms):7.1f}"
    )


def memory(label: str, pid: int) -> None:
    parts = [f"harness {rss_kib(pid) / 1024:.0f} MiB"]
    by_name: dict[str, int] = {}
    for child in descendants(pid):
        by_name[process_name(child)] = by_name.get(process_name(child), 0) + rss_kib(child)
    parts += [f"{k} {v / 1024:.0f} MiB" for k, v in sorted(by_name.items())]
    print(f"RSS {label:<30} " + ", ".join(parts))


async def main(turns: int, cold_turns: int) -> None:
    with short_temp_dir("hive-bench-") as root:
        async with sm.open_scripted_model() as model, open_test_hive(directory=root) as hive:
            env = {
                "ANTHROPIC_BASE_URL": model.url,
                "ANTHROPIC_API_KEY": "sk-bench",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            }
            harness = [sys.executable, "-m", "hive_trio", "agent"]
            warm = await start_agent(hive, root, "warm", [*harness, "--runtime", "claude"], env)
            try:
                latencies = await measure(hive, model, "warm", turns)
                report("warm session (--runtime claude)", latencies)
                memory("warm (idle, after the run)", warm.pid)
            finally:
                warm.terminate()
                await warm.wait()
            if cold_turns:
                socket = str(hive.socket_path("cold"))
                bridge = {"command": sys.executable, "args": ["-m", "hive_trio", "mcp-bridge", socket]}
                mcp = json.dumps({"mcpServers": {"hive": bridge}})
                template = (
                    f"{shlex.quote(bundled_cli())} -p --continue --allowedTools mcp__hive "
                    f"--mcp-config {shlex.quote(mcp)}"
                )
                escaped = template.replace("{", "{{").replace("}", "}}")
                command = [*harness, "--runtime", "command", "--turn-command", escaped]
                cold = await start_agent(hive, root, "cold", command, {**env, "ENABLE_TOOL_SEARCH": "false"})
                try:
                    report("cold CLI per turn (claude -p --continue)", await measure(hive, model, "cold", cold_turns))
                finally:
                    cold.terminate()
                    await cold.wait()
        print(f"(machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; scripted model on loopback)")


def _args() -> Any:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--cold-turns", type=int, default=10)
    return parser.parse_args()


if __name__ == "__main__":
    a = _args()
    trio.run(main, a.turns, a.cold_turns)
