"""Durable sends end to end through an agent's MCP socket, against raw APSW commits on the same disk.

The daemon runs as its own process (`python -m hive_trio daemon`, synchronous=FULL, as shipped) with idle
process agents; this process holds the clients. Each client is a plain JSON-lines MCP client on a unix
socket (handshake, then `tools/call send` and wait for the reply: one call in flight per connection), so
what is measured is the daemon and the disk, not a client library. A send is acknowledged only after the
COMMIT that holds it; with many clients, `Database.write` group-commits their sends.

In the same run, on the same filesystem (the daemon's state dir): raw APSW single-row INSERT commits in
a loop, `synchronous=FULL`, WAL — the physical limit one writer can reach.

Usage: python scripts/bench_send.py [--seconds 5] [--repeat 3] [--connections 1 32] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_store import raw_rate

from hive_trio.clients.host import host_request
from hive_trio.testing import open_daemon_process, short_temp_dir

HELLO = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
IDLE_AGENT = "exec sleep infinity"


class LineClient:
    """The smallest honest MCP client: newline-framed JSON-RPC over the socket, one call at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.next_id = 0

    @classmethod
    async def connect(cls, path: Path) -> LineClient:
        client = cls(await trio.open_unix_socket(str(path)))
        await client.request("initialize", HELLO)
        await client.stream.send_all(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        return client

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        await self.stream.send_all(line.encode() + b"\n")
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                reply: dict[str, Any] = json.loads(self.buffer[:end])
                del self.buffer[: end + 1]
                if reply.get("id") == self.next_id:
                    return reply
                continue
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("the daemon closed the connection")
            self.buffer += data

    async def call(self, tool: str, **arguments: Any) -> Any:
        reply = await self.request("tools/call", {"name": tool, "arguments": arguments})
        result = reply["result"]
        if result.get("isError"):
            raise RuntimeError(result["content"][0]["text"])
        return json.loads(result["content"][0]["text"])


class BlockingClient:
    """The same client on a blocking socket, for one connection: no event loop between the calls."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.next_id = 0
        self.request("initialize", HELLO)
        self.sock.sendall(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        self.sock.sendall(line.encode() + b"\n")
        while True:
            reply: dict[str, Any] = json.loads(self.file.readline())
            if reply.get("id") == self.next_id:
                return reply

    def call(self, tool: str, **arguments: Any) -> Any:
        result = self.request("tools/call", {"name": tool, "arguments": arguments})["result"]
        if result.get("isError"):
            raise RuntimeError(result["content"][0]["text"])
        return json.loads(result["content"][0]["text"])

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def blocking_burst(path: Path, daemon_pid: int, *, seconds: float, recipient: str) -> dict[str, float]:
    client = BlockingClient(path)
    client.call("send", to=recipient, body="warm-up")
    latencies: list[float] = []
    daemon_cpu, loop_cpu = cpu_seconds(daemon_pid), cpu_seconds(daemon_pid, tid=daemon_pid)
    client_cpu = time.thread_time()
    started = time.perf_counter()
    deadline = started + seconds
    n = 0
    while (now := time.perf_counter()) < deadline:
        client.call("send", to=recipient, body=f"durable message {n}")
        latencies.append(time.perf_counter() - now)
        n += 1
    elapsed = time.perf_counter() - started
    client_cpu = time.thread_time() - client_cpu
    daemon_cpu, loop_cpu = cpu_seconds(daemon_pid) - daemon_cpu, cpu_seconds(daemon_pid, tid=daemon_pid) - loop_cpu
    client.close()
    return {
        "rate": n / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "daemon_us": daemon_cpu / n * 1e6,
        "loop_us": loop_cpu / n * 1e6,
        "client_us": client_cpu / n * 1e6,
    }


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int, *, tid: int | None = None) -> float:
    """User + system CPU time of a process (or of one of its threads), from /proc (Linux)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send_burst(
    sockets: list[Path], daemon_pid: int, *, connections: int, seconds: float, recipient: str
) -> dict[str, float]:
    clients = [await LineClient.connect(sockets[i % len(sockets)]) for i in range(connections)]
    latencies: list[float] = []
    for client in clients:  # warm-up, not counted
        await client.call("send", to=recipient, body="warm-up")
    daemon_cpu, client_cpu = cpu_seconds(daemon_pid), time.process_time()
    loop_cpu = cpu_seconds(daemon_pid, tid=daemon_pid)  # the trio thread; the rest is sqlite's workers
    started = time.perf_counter()
    deadline = started + seconds

    async def loop(client: LineClient) -> None:
        n = 0
        while (now := time.perf_counter()) < deadline:
            await client.call("send", to=recipient, body=f"durable message {n}")
            latencies.append(time.perf_counter() - now)
            n += 1

    async with trio.open_nursery() as nursery:
        for client in clients:
            nursery.start_soon(loop, client)
    elapsed = time.perf_counter() - started
    daemon_cpu, client_cpu = cpu_seconds(daemon_pid) - daemon_cpu, time.process_time() - client_cpu
    loop_cpu = cpu_seconds(daemon_pid, tid=daemon_pid) - loop_cpu
    for client in clients:
        await client.stream.aclose()
    total = len(latencies)
    return {
        "rate": total / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "daemon_us": daemon_cpu / total * 1e6,
        "loop_us": loop_cpu / total * 1e6,
        "client_us": client_cpu / total * 1e6,
    }


async def measure(seconds: float, repeat: int, connection_counts: list[int], base: Path | None) -> dict[str, Any]:
    """Raw APSW and end-to-end sends, interleaved run by run; medians over `repeat` runs."""
    results: dict[str, Any] = {"raw": [], **{f"e2e_{n}": [] for n in connection_counts}}
    with short_temp_dir("hs-") as directory:
        scratch = Path(base) if base else directory
        async with open_daemon_process(directory, "--log-level", "warning", "--agent-command", IDLE_AGENT) as daemon:
            senders = [f"s{i}" for i in range(4)]
            for name in [*senders, "sink"]:
                await host_request(daemon.host_socket, "spawn", name=name)
            sockets = [daemon.runtime_dir / "agents" / name / "mcp.sock" for name in senders]
            for run in range(repeat):
                raw_db = scratch / f"raw-{run}.db"
                results["raw"].append(await trio.to_thread.run_sync(raw_rate, raw_db, seconds))
                for n in connection_counts:
                    if n == 1:
                        one = await trio.to_thread.run_sync(
                            lambda: blocking_burst(sockets[0], daemon.process.pid, seconds=seconds, recipient="sink")
                        )
                        results["e2e_1"].append(one)
                        continue
                    results[f"e2e_{n}"].append(
                        await send_burst(sockets, daemon.process.pid, connections=n, seconds=seconds, recipient="sink")
                    )
    summary: dict[str, Any] = {"raw": statistics.median(results["raw"])}
    for n in connection_counts:
        runs = results[f"e2e_{n}"]
        summary[f"e2e_{n}"] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return summary


def report(summary: dict[str, Any]) -> None:
    raw = summary["raw"]
    print(f"raw APSW single-row commits/s, synchronous=FULL        {raw:9.0f}   1.00x")
    for key, values in summary.items():
        if not key.startswith("e2e_"):
            continue
        n = int(key.split("_")[1])
        print(
            f"MCP send end to end, {n:>2} connection{'s' if n > 1 else ' '}                   {values['rate']:9.0f}"
            f"   {values['rate'] / raw:4.2f}x  p50 {values['p50_ms']:6.2f} ms  p99 {values['p99_ms']:6.2f} ms"
            f"  cpu/send: daemon {values['daemon_us']:4.0f} us (trio thread {values['loop_us']:3.0f}),"
            f" client {values['client_us']:3.0f} us"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--dir", type=Path, default=None, help="where the raw database goes (default: beside hive.db)")
    args = parser.parse_args()
    summary = trio.run(measure, args.seconds, args.repeat, args.connections, args.dir)
    report(summary)
    print("RESULT " + json.dumps(summary), flush=True)  # for scripts/bench_all.py


if __name__ == "__main__":
    main()
