"""Store-level commit rates, side by side in one run on one disk, at synchronous=FULL.

1. raw APSW: single-row INSERT commits in a loop on the calling thread (the physical limit here);
2. Broker.send, one caller: each send is one transaction through `trio.to_thread`;
3. Broker.send, 32 concurrent callers: group commit batches them, each acked only after its COMMIT.

Usage: python scripts/bench_store.py [--seconds 3] [--dir DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import trio

from hive_trio.store.broker import Broker
from hive_trio.store.database import Database, connect, migrate
from hive_trio.store.roster import Roster


def raw_rate(path: Path, seconds: float) -> float:
    conn = connect(path, synchronous="FULL")
    migrate(conn)
    conn.execute("INSERT OR IGNORE INTO agents (name, created_at) VALUES ('bench', 0)")
    n = 0
    end = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        with conn:
            conn.execute(
                "INSERT INTO messages (sender, recipient, body, sent_at) VALUES ('a', 'bench', 'hello', ?)",
                (time.time(),),
            )
        n += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


async def broker_rate(path: Path, seconds: float, senders: int) -> tuple[float, float]:
    db = await Database.open(path, synchronous="FULL")
    roster = Roster(db, clock=time.time)
    if await roster.get("bench") is None:
        await roster.add("bench")
    broker = Broker(db, clock=time.time, max_body_bytes=65536)
    count = 0
    batches0 = db.batches
    deadline = trio.current_time() + seconds

    async def sender() -> None:
        nonlocal count
        while trio.current_time() < deadline:
            await broker.send("a", "bench", "hello")
            count += 1

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(senders):
            nursery.start_soon(sender)
    elapsed = time.perf_counter() - start
    batches = db.batches - batches0
    db.close()
    return count / elapsed, count / max(batches, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="directory on the disk to measure")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
    raws, singles, groups, batch_sizes = [], [], [], []
    for i in range(args.repeat):
        raws.append(raw_rate(base / f"raw{i}.db", args.seconds))
        singles.append(trio.run(broker_rate, base / f"one{i}.db", args.seconds, 1)[0])
        rate, per_batch = trio.run(broker_rate, base / f"group{i}.db", args.seconds, 32)
        groups.append(rate)
        batch_sizes.append(per_batch)
    raw, single, group = statistics.median(raws), statistics.median(singles), statistics.median(groups)
    print(f"disk: {base}  synchronous=FULL  runs={args.repeat} x {args.seconds:g}s (medians)")
    print(f"raw APSW single-row commits/s        {raw:10.0f}")
    print(f"Broker.send via to_thread, 1 sender  {single:10.0f}   {single / raw:5.2f}x raw  (target >= 0.50x)")
    print(
        f"Broker.send, 32 senders (group)      {group:10.0f}   {group / raw:5.2f}x raw  (target >= 5x)"
        f"  ~{statistics.median(batch_sizes):.1f} sends/commit"
    )
    summary = {"raw": raw, "single": single, "group": group, "sends_per_commit": statistics.median(batch_sizes)}
    print("RESULT " + json.dumps(summary), flush=True)  # for scripts/bench_all.py


if __name__ == "__main__":
    main()
