"""Durable sends end to end through an agent's MCP socket, against raw APSW commits on the same disk.

The daemon runs as its own process (`python -m hive_trio daemon`, synchronous=FULL, as shipped) with idle
process agents. The clients are lean: this script speaks MCP's newline-delimited JSON-RPC itself
(`initialize`, `notifications/initialized`, then `tools/call` with pre-formatted bytes, one request in
flight per connection), on blocking sockets for one connection and from one `select.epoll` loop in one
thread for many, and its own CPU is measured and reported, so what is measured is the daemon and the disk.
Every reply is checked for an error. A send is acknowledged only after the COMMIT that holds it.

Each round runs, back to back: raw APSW single-row INSERT commits (WAL, synchronous=FULL, the same
schema, the daemon's filesystem) — the physical limit one writer reaches; then for each daemon under test
`send` with 1 and 32 connections, `list_agents` on 1, and the wake-up of a parked `recv` on another
socket by a `send`. Ratios are against the raw rate of the same round. `--before REV` also runs a daemon
from that git revision (exported to a scratch directory), interleaved in the same rounds, for a
before/after comparison taken on the same disk at the same time.

CPU per call, from /proc: the daemon process, its trio thread (user and system), the rest of its threads
(sqlite's worker), and this script's client thread.

`--slow-fsync-us N` checks the guarantee that a commit on the event loop never makes an unrelated
connection wait: an LD_PRELOAD shim (built with cc) delays every fsync/fdatasync of the daemon by N µs, and
the p99 of `list_agents` on one socket is measured alone and while another socket sends.

Usage: python scripts/bench_send.py [--seconds 5] [--rounds 3] [--connections 1 32] [--before REV]
       python scripts/bench_send.py --slow-fsync-us 20000
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_store import raw_rate

from hive_trio.clients.host import host_request
from hive_trio.testing import open_daemon_process, short_temp_dir

HELLO = (
    b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    b'"capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}\n'
    b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
)
IDLE_AGENT = "exec sleep infinity"
SENDERS = [f"s{i}" for i in range(4)]
REPO = Path(__file__).resolve().parent.parent


def send_request(request_id: int, recipient: str = "sink") -> bytes:
    return (
        b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"send","arguments":'
        b'{"to":"%s","body":"durable message %d"}}}\n' % (request_id, recipient.encode(), request_id)
    )


def list_request(request_id: int) -> bytes:
    return b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"list_agents","arguments":{}}}\n' % (
        request_id
    )


def recv_request(request_id: int) -> bytes:
    return (
        b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"recv","arguments":'
        b'{"wait_seconds":5,"max":1}}}\n' % request_id
    )


def check(line: bytes) -> None:
    if b'"isError":true' in line or b'"error":' in line:
        raise RuntimeError(f"the daemon answered an error: {line[:300]!r}")


class LeanConn:
    """One MCP connection on a unix socket: the handshake, then raw lines. Blocking unless told otherwise."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.buffer = b""
        self.sock.sendall(HELLO)
        check(self.read_line())  # the initialize reply; the notification has none

    def read_line(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the daemon closed the connection")
            self.buffer += data
        line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
        return line

    def call(self, request: bytes) -> bytes:
        self.sock.sendall(request)
        line = self.read_line()
        check(line)
        return line

    def close(self) -> None:
        self.sock.close()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def thread_times(pid: int, tid: int | None = None) -> tuple[float, float]:
    """(user, system) CPU seconds of a process or one of its threads, from /proc (Linux)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


class CpuMeter:
    """CPU of the daemon (whole, trio thread user/sys) and of the calling thread, over one measurement."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self._read()

    def _read(self) -> tuple[float, float, float, float]:
        user, system = thread_times(self.pid)
        loop_user, loop_system = thread_times(self.pid, self.pid)
        return user + system, loop_user, loop_system, time.thread_time()

    def per_call(self, calls: int) -> dict[str, float]:
        end = self._read()
        total, loop_user, loop_system, client = (b - a for a, b in zip(self.start, end, strict=True))
        us = 1e6 / max(calls, 1)
        return {
            "daemon_us": total * us,
            "loop_us": (loop_user + loop_system) * us,
            "loop_user_us": loop_user * us,
            "loop_sys_us": loop_system * us,
            "workers_us": (total - loop_user - loop_system) * us,
            "client_us": client * us,
        }


def blocking_burst(path: Path, pid: int, seconds: float, make: Callable[[int], bytes]) -> dict[str, float]:
    conn = LeanConn(path)
    for i in range(20):  # warm-up, not counted
        conn.call(make(i + 1))
    latencies: list[float] = []
    meter = CpuMeter(pid)
    started = time.perf_counter()
    deadline = started + seconds
    request_id = 100
    while (now := time.perf_counter()) < deadline:
        request_id += 1
        conn.call(make(request_id))
        latencies.append(time.perf_counter() - now)
    elapsed = time.perf_counter() - started
    cpu = meter.per_call(len(latencies))
    conn.close()
    return summary_of(latencies, elapsed) | cpu


def epoll_burst(paths: list[Path], pid: int, seconds: float, connections: int) -> dict[str, float]:
    """`connections` clients, one call in flight each, driven from one epoll loop in this thread."""
    conns = [LeanConn(paths[i % len(paths)]) for i in range(connections)]
    for n, conn in enumerate(conns):  # warm-up, not counted
        for i in range(5):
            conn.call(send_request(1000 * n + i + 1))
    poller = select.epoll()
    by_fd: dict[int, LeanConn] = {}
    for conn in conns:
        conn.sock.setblocking(False)
        poller.register(conn.sock.fileno(), select.EPOLLIN)
        by_fd[conn.sock.fileno()] = conn
    sent_at: dict[int, float] = {}
    next_id = {fd: 10_000 * (i + 1) for i, fd in enumerate(by_fd)}
    latencies: list[float] = []
    meter = CpuMeter(pid)
    started = time.perf_counter()
    deadline = started + seconds
    for fd, conn in by_fd.items():
        sent_at[fd] = time.perf_counter()
        conn.sock.send(send_request(next_id[fd]))
    outstanding = len(by_fd)
    while outstanding:
        for fd, _ in poller.poll(1.0):
            conn = by_fd[fd]
            data = conn.sock.recv(65536)
            if not data:
                raise EOFError("the daemon closed a connection")
            conn.buffer += data
            while (end := conn.buffer.find(b"\n")) >= 0:
                line, conn.buffer = conn.buffer[:end], conn.buffer[end + 1 :]
                now = time.perf_counter()
                check(line)
                if now < deadline:
                    latencies.append(now - sent_at[fd])
                    next_id[fd] += 1
                    sent_at[fd] = now
                    conn.sock.send(send_request(next_id[fd]))  # a few hundred bytes: never blocks here
                else:
                    outstanding -= 1
        if time.perf_counter() > deadline + 30:
            raise RuntimeError("replies stopped arriving")
    elapsed = time.perf_counter() - started
    cpu = meter.per_call(len(latencies))
    poller.close()
    for conn in conns:
        conn.close()
    return summary_of(latencies, elapsed) | cpu


def recv_wakeup(sender: Path, recipient: Path, seconds: float) -> dict[str, float]:
    """A `recv(wait_seconds=5)` parked on `recipient`'s socket, woken by a `send` from `sender`'s socket.

    `ack_to_recv` is the time from the sender's acknowledgement (its COMMIT is done) to the parked recv's
    reply; `send_to_recv` is from writing the send request, an upper bound that includes the send's own
    commit. Each sample parks a fresh recv 5 ms before the send.
    """
    poster, parked = LeanConn(sender), LeanConn(recipient)
    drain = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"recv","arguments":{"max":100}}}\n'
    while b'\\"messages\\":[]' not in parked.call(drain % 999_999):
        pass  # empty the recipient's inbox first (its spawn notice, messages of an earlier round)
    ack_to_recv: list[float] = []
    send_to_recv: list[float] = []
    deadline = time.perf_counter() + seconds
    request_id = 0
    while time.perf_counter() < deadline or len(ack_to_recv) < 20:
        request_id += 1
        parked.sock.sendall(recv_request(request_id))
        time.sleep(0.005)  # let the daemon park it
        t0 = time.perf_counter()
        poster.sock.sendall(send_request(request_id, "parked"))
        t_ack = t_recv = 0.0
        while not (t_ack and t_recv):
            ready, _, _ = select.select([poster.sock, parked.sock], [], [], 10)
            if not ready:
                raise RuntimeError("no reply within 10 s")
            for sock in ready:
                conn = poster if sock is poster.sock else parked
                line = conn.read_line()
                check(line)
                if conn is poster:
                    t_ack = time.perf_counter()
                else:
                    if b"durable message" not in line:
                        raise RuntimeError(f"the parked recv returned without the message: {line[:200]!r}")
                    t_recv = time.perf_counter()
        ack_to_recv.append(t_recv - t_ack)
        send_to_recv.append(t_recv - t0)
    poster.close()
    parked.close()
    return {
        "samples": len(ack_to_recv),
        "ack_to_recv_p50_ms": percentile(ack_to_recv, 0.5) * 1000,
        "ack_to_recv_p99_ms": percentile(ack_to_recv, 0.99) * 1000,
        "send_to_recv_p50_ms": percentile(send_to_recv, 0.5) * 1000,
        "send_to_recv_p99_ms": percentile(send_to_recv, 0.99) * 1000,
    }


def summary_of(latencies: list[float], elapsed: float) -> dict[str, float]:
    return {
        "rate": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def export_revision(revision: str, into: Path) -> Path:
    """The package tree of `revision` in a scratch directory (git archive: the repository is only read)."""
    command = ["git", "-C", str(REPO), "archive", revision, "hive_trio"]
    archive = subprocess.run(command, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


class Hive:
    """One daemon under test, its agents spawned, and where its sockets are."""

    def __init__(self, label: str, daemon: Any) -> None:
        self.label = label
        self.daemon = daemon
        self.pid: int = daemon.process.pid
        agents = daemon.runtime_dir / "agents"
        self.senders = [agents / name / "mcp.sock" for name in SENDERS]
        self.parked = agents / "parked" / "mcp.sock"


async def start_hive(label: str, directory: Path, env: dict[str, str]) -> Any:
    manager = open_daemon_process(directory, "--log-level", "warning", "--agent-command", IDLE_AGENT, env=env)
    daemon = await manager.__aenter__()
    for name in [*SENDERS, "sink", "parked"]:
        await host_request(daemon.host_socket, "spawn", name=name)
    return manager, Hive(label, daemon)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    with short_temp_dir("hs-") as directory, tempfile.TemporaryDirectory(prefix="hive-before-") as before_dir:
        variants = [("after", directory / "after", {})]
        if args.before:
            code = export_revision(args.before, Path(before_dir))
            # PYTHONSAFEPATH: `-m` must not put the current directory (this checkout) first on the path.
            variants.insert(0, ("before", directory / "before", {"PYTHONPATH": str(code), "PYTHONSAFEPATH": "1"}))
        managers, hives = [], []
        try:
            for label, path, env in variants:
                path.mkdir()
                manager, hive = await start_hive(label, path, env)
                managers.append(manager)
                hives.append(hive)
            for number in range(args.rounds):
                result: dict[str, Any] = {}
                raw_db = directory / f"raw-{number}.db"
                result["raw"] = await trio.to_thread.run_sync(raw_rate, raw_db, args.seconds)
                for hive in hives:
                    for n in args.connections:
                        if n == 1:
                            one = await trio.to_thread.run_sync(
                                blocking_burst, hive.senders[0], hive.pid, args.seconds, send_request
                            )
                        else:
                            one = await trio.to_thread.run_sync(epoll_burst, hive.senders, hive.pid, args.seconds, n)
                        result[f"{hive.label}.send_{n}"] = one
                    result[f"{hive.label}.list_agents_1"] = await trio.to_thread.run_sync(
                        blocking_burst, hive.senders[1], hive.pid, args.seconds, list_request
                    )
                    result[f"{hive.label}.recv_wakeup"] = await trio.to_thread.run_sync(
                        recv_wakeup, hive.senders[2], hive.parked, min(args.seconds, 3.0)
                    )
                result["raw_end"] = await trio.to_thread.run_sync(raw_rate, raw_db, min(args.seconds, 2.0))
                rounds.append(result)
                print(f"round {number + 1}/{args.rounds} done (raw {result['raw']:.0f}/s)", flush=True)
        finally:
            for manager in reversed(managers):
                await manager.__aexit__(None, None, None)
    return {"rounds": rounds, "seconds": args.seconds}


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "med": statistics.median(values), "max": max(values)}


def summarize(measured: dict[str, Any]) -> dict[str, Any]:
    """min / median / max over rounds of every figure, and each rate's ratio to its own round's raw rate."""
    rounds = measured["rounds"]
    summary: dict[str, Any] = {key: spread([r[key] for r in rounds]) for key in ("raw", "raw_end")}
    for key in rounds[0]:
        if key in ("raw", "raw_end"):
            continue
        figures: dict[str, Any] = {}
        for field in rounds[0][key]:
            figures[field] = spread([r[key][field] for r in rounds])
        if "rate" in rounds[0][key]:
            figures["ratio"] = spread([r[key]["rate"] / r["raw"] for r in rounds])
        summary[key] = figures
    summary["rounds"] = rounds  # every figure of every round, for the record
    return summary


def cell(figure: dict[str, float], fmt: str) -> str:
    return f"{figure['min']:{fmt}} / {figure['med']:{fmt}} / {figure['max']:{fmt}}"


def report(summary: dict[str, Any]) -> None:
    print("cells are min / median / max over rounds; ratios against the same round's raw rate")
    print(f"raw APSW single-row commits/s, FULL   {cell(summary['raw'], ',.0f')}")
    print(f"  (again at the end of each round:    {cell(summary['raw_end'], ',.0f')})")
    for key, figures in summary.items():
        if key.startswith("raw") or key == "rounds":
            continue
        if "rate" in figures:
            print(
                f"{key:<24} {cell(figures['rate'], ',.0f')}/s  x raw {cell(figures['ratio'], '.2f')}  "
                f"p50 {cell(figures['p50_ms'], '.2f')} ms  p99 {cell(figures['p99_ms'], '.1f')} ms"
            )
            print(
                f"{'':<24} cpu/call us (median): daemon {figures['daemon_us']['med']:.0f} = trio thread "
                f"{figures['loop_us']['med']:.0f} (user {figures['loop_user_us']['med']:.0f}, sys "
                f"{figures['loop_sys_us']['med']:.0f}) + workers {figures['workers_us']['med']:.0f}; "
                f"client {figures['client_us']['med']:.0f}"
            )
        else:
            print(
                f"{key:<24} ack->recv p50 {cell(figures['ack_to_recv_p50_ms'], '.2f')} ms, p99 "
                f"{cell(figures['ack_to_recv_p99_ms'], '.2f')} ms; send->recv p50 "
                f"{cell(figures['send_to_recv_p50_ms'], '.2f')} ms"
            )


SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>
static void pause_us(void) { const char *s = getenv("SLOW_FSYNC_US"); if (s) usleep(atoi(s)); }
static int (*real_fdatasync)(int), (*real_fsync)(int);
int fdatasync(int fd) {
    if (!real_fdatasync) real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    pause_us();
    return real_fdatasync(fd);
}
int fsync(int fd) {
    if (!real_fsync) real_fsync = dlsym(RTLD_NEXT, "fsync");
    pause_us();
    return real_fsync(fd);
}
"""


def build_shim(directory: Path) -> Path:
    source, library = directory / "slowfsync.c", directory / "slowfsync.so"
    source.write_text(SHIM)
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"], check=True)
    return library


async def slow_fsync(args: argparse.Namespace) -> dict[str, Any]:
    """p99 of list_agents on one socket, alone and while another socket sends, with every fsync slowed."""
    with short_temp_dir("hs-") as directory:
        env = {"LD_PRELOAD": str(build_shim(directory)), "SLOW_FSYNC_US": str(args.slow_fsync_us)}
        manager, hive = await start_hive("slow", directory, env)
        try:
            alone = await trio.to_thread.run_sync(blocking_burst, hive.senders[1], hive.pid, args.seconds, list_request)
            stop = time.perf_counter() + args.seconds + 1.0
            sent = 0

            def sender() -> None:
                nonlocal sent
                conn = LeanConn(hive.senders[0])
                while time.perf_counter() < stop:
                    sent += 1
                    conn.call(send_request(sent))
                conn.close()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, sender)
                await trio.sleep(0.5)
                busy = await trio.to_thread.run_sync(
                    blocking_burst, hive.senders[1], hive.pid, args.seconds, list_request
                )
        finally:
            await manager.__aexit__(None, None, None)
    return {"fsync_delay_us": args.slow_fsync_us, "sends": sent, "alone": alone, "while_sending": busy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", "--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--before", default=None, help="also run the daemon of this git revision, interleaved")
    parser.add_argument("--slow-fsync-us", type=int, default=0, help="run the slow-fsync isolation check instead")
    args = parser.parse_args()
    if args.slow_fsync_us:
        result = trio.run(slow_fsync, args)
        for label in ("alone", "while_sending"):
            r = result[label]
            print(f"list_agents p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms ({label})")
        print(f"sends meanwhile: {result['sends']} with every fsync delayed {args.slow_fsync_us} us")
        print("RESULT " + json.dumps({"slow_fsync": result}), flush=True)
        return
    summary = summarize(trio.run(measure, args))
    report(summary)
    print("RESULT " + json.dumps(summary), flush=True)  # for scripts/bench_all.py


if __name__ == "__main__":
    main()
