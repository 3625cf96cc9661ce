"""MCP `tools/call` round trips against a real daemon process, as agents make them.

The daemon runs as its own process (`python -m hive_trio daemon`, via `hive_trio.testing`); this process
holds the clients: the official SDK's `ClientSession` over the agent's unix socket, one call at a time
per connection. Reported per run: calls/s over all connections, and p50/p99 latency of single calls.

Usage: python scripts/bench_mcp.py [--seconds 5] [--connections 1 32] [--tool list_agents] [--agents 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import trio

from hive_trio.clients.mcp import AgentClient, open_agent_client
from hive_trio.testing import open_daemon_process, short_temp_dir


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_connections(
    socket: Path, daemon_pid: int, *, connections: int, seconds: float, tool: str, args: dict[str, Any]
) -> None:
    latencies: list[float] = []
    clients: list[AgentClient] = []
    async with trio.open_nursery() as nursery:
        ready = trio.Event()

        async def one() -> None:
            async with open_agent_client(socket) as client:
                clients.append(client)
                if len(clients) == connections:
                    ready.set()
                await ready.wait()
                await client.call(tool, **args)  # warm-up, not counted
                end = time.perf_counter() + seconds
                while (now := time.perf_counter()) < end:
                    await client.call(tool, **args)
                    latencies.append(time.perf_counter() - now)

        daemon_cpu, client_cpu = cpu_seconds(daemon_pid), time.process_time()
        for _ in range(connections):
            nursery.start_soon(one)
    daemon_cpu, client_cpu = cpu_seconds(daemon_pid) - daemon_cpu, time.process_time() - client_cpu
    total = len(latencies)
    summary = {"tool": tool, "connections": connections, "rate": total / seconds}
    summary |= {"p50_ms": percentile(latencies, 0.50) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000}
    print("RESULT " + json.dumps(summary), flush=True)  # for scripts/bench_all.py
    print(
        f"{tool:<12} connections={connections:<3} calls={total:<7} calls/s={total / seconds:7.0f} "
        f"p50={percentile(latencies, 0.50) * 1000:6.3f} ms  p99={percentile(latencies, 0.99) * 1000:6.3f} ms  "
        f"cpu: daemon {daemon_cpu / total * 1e6:4.0f} us/call, clients {client_cpu / total * 1e6:4.0f} us/call"
    )


async def main(options: argparse.Namespace) -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    with short_temp_dir("hb-") as directory:
        async with open_daemon_process(directory, "--log-level", "warning") as daemon:
            for i in range(options.agents):
                result = await daemon.run_cli("spawn", f"agent-{i}")
                assert result.returncode == 0, result.stderr
            socket = daemon.runtime_dir / "agents" / "agent-0" / "mcp.sock"
            tool_args: dict[str, Any] = {"wait_seconds": 0} if options.tool == "recv" else {}
            for connections in options.connections:
                for _ in range(options.repeat):
                    await run_connections(
                        socket,
                        daemon.process.pid,
                        connections=connections,
                        seconds=options.seconds,
                        tool=options.tool,
                        args=tool_args,
                    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--tool", default="list_agents", choices=["list_agents", "whoami", "status", "recv"])
    parser.add_argument("--agents", type=int, default=8, help="agents in the roster (list_agents returns them all)")
    parser.add_argument("--repeat", type=int, default=1)
    trio.run(main, parser.parse_args())
