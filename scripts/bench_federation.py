"""Cross-hive sends over NATS JetStream beside local sends, in one run on this machine.

Two in-process hives (`a`, `b`), each with its own embedded nats-server, linked by a leafnode on
loopback, exactly as docs/FEDERATION.md sets them up. Measured through the coordinator (no MCP socket,
so the figures are the link's cost, not the agent socket's):
  latency      one message at a time: `send` committed -> the recipient's parked `recv` returns it
               (local: alice -> bob on hive a; remote: alice@a -> bob@b), p50/p99 over --pings;
  throughput   --burst sends as fast as one sender commits them, until the recipient has received them all.

Prints a table and a `RESULT {json}` line. Usage: python scripts/bench_federation.py [--pings N] [--burst N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from hive_trio.federation.server import free_port
from hive_trio.rules.federation import FederationConfig, LeafPeer, LeafRemote
from hive_trio.testing import InProcessHive, open_test_hive


def pair() -> tuple[FederationConfig, FederationConfig]:
    port = free_port()
    fed_b = FederationConfig(
        enabled=True, hive="b", leaf_listen=f"127.0.0.1:{port}", leaf_peers=[LeafPeer(hive="a", password="bench")]
    )
    fed_a = FederationConfig(
        enabled=True, hive="a", leaf_remotes=[LeafRemote(url=f"nats-leaf://127.0.0.1:{port}", password="bench")]
    )
    return fed_a, fed_b


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(sender: InProcessHive, receiver: InProcessHive, to: str, pings: int) -> list[float]:
    out = []
    for i in range(pings):
        t0 = time.perf_counter()
        await sender.coordinator.send("alice", to, f"ping {i}")
        got = await receiver.coordinator.recv("bob", wait_seconds=30, limit=1)
        out.append((time.perf_counter() - t0) * 1000)
        assert got, "no message within 30 s"
        await receiver.coordinator.ack_turn("bob")
    return out


async def throughput(sender: InProcessHive, receiver: InProcessHive, to: str, burst: int) -> tuple[float, float]:
    """(sends committed per second, messages received per second end to end)."""
    received = 0
    done = trio.Event()

    async def drain() -> None:
        nonlocal received
        while received < burst:
            got = await receiver.coordinator.recv("bob", wait_seconds=30, limit=32)
            if not got:
                raise RuntimeError(f"stalled after {received} of {burst}")
            received += len(got)
            await receiver.coordinator.ack_turn("bob")
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        t0 = time.perf_counter()
        for i in range(burst):
            await sender.coordinator.send("alice", to, f"burst {i}")
        sent_s = time.perf_counter() - t0
        await done.wait()
        total_s = time.perf_counter() - t0
    return burst / sent_s, burst / total_s


async def main(pings: int, burst: int) -> dict[str, Any]:
    fed_a, fed_b = pair()
    with tempfile.TemporaryDirectory(prefix="hbf-", dir="/tmp") as tmp:
        root = Path(tmp)
        (root / "a").mkdir()
        (root / "b").mkdir()
        async with (
            open_test_hive(agents=["bob"], directory=root / "b", federation=fed_b) as hb,
            open_test_hive(agents=["alice", "bob"], directory=root / "a", federation=fed_a) as ha,
        ):
            fed = ha.coordinator.federation
            assert fed is not None
            with trio.fail_after(20):
                while not fed.remote_agents():  # noqa: ASYNC110 -- the link is up once b's first roster arrives
                    await trio.sleep(0.05)
            await latency(ha, ha, "bob", 20)  # warm up both paths
            await latency(ha, hb, "bob@b", 20)
            local = await latency(ha, ha, "bob", pings)
            remote = await latency(ha, hb, "bob@b", pings)
            local_tp = await throughput(ha, ha, "bob", burst)
            remote_tp = await throughput(ha, hb, "bob@b", burst)
    return {
        "pings": pings,
        "burst": burst,
        "local": {
            "p50_ms": pct(local, 0.5),
            "p99_ms": pct(local, 0.99),
            "send_per_s": local_tp[0],
            "recv_per_s": local_tp[1],
        },
        "remote": {
            "p50_ms": pct(remote, 0.5),
            "p99_ms": pct(remote, 0.99),
            "send_per_s": remote_tp[0],
            "recv_per_s": remote_tp[1],
        },
        "mean_remote_ms": statistics.fmean(remote),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "python": sys.version.split()[0],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=300)
    parser.add_argument("--burst", type=int, default=2000)
    opts = parser.parse_args()
    result = trio.run(main, opts.pings, opts.burst)
    print(f"{'':8} {'p50 ms':>8} {'p99 ms':>8} {'sends/s':>9} {'recv/s':>9}")
    for key in ("local", "remote"):
        r = result[key]
        print(f"{key:8} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['send_per_s']:9.0f} {r['recv_per_s']:9.0f}")
    print(f"machine: {result['machine']}")
    print("RESULT " + json.dumps(result))
