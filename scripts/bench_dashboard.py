"""Dashboard fan-out benchmark: N websocket subscribers, event latency p50/p99, with and without a stalled one.

The daemon (a real `open_hive` with its dashboard on loopback, port 0, garbage collection tuned as
`serve_daemon` tunes it) runs in this process; the subscribers run in a child process (real TCP
websockets, wsproto, one select loop), so server and clients each get a core. Each event carries its
emit time (CLOCK_MONOTONIC is system-wide on Linux); a subscriber's latency is receive time minus emit
time. In the stalled run one more subscriber completes the handshake with a tiny receive buffer and
then never reads: the hub must drop it, the send timeout must cut it, and the others must not notice.

    python scripts/bench_dashboard.py                       # 1000 subscribers, 60 events at 2/s
    python scripts/bench_dashboard.py --subscribers 200 --events 50

Results go to stdout as a markdown table (docs/PERFORMANCE.md keeps the measured ones).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage
from wsproto.frame_protocol import FrameProtocol

from hive_trio.daemon import open_hive, tune_garbage_collection
from hive_trio.dashboard.protocol import ResumePoint, stream_url
from hive_trio.dashboard.server import DashboardServer
from hive_trio.dashboard.token import dashboard_url
from hive_trio.records import OPERATOR, SentEvent
from hive_trio.rules.config import Config

END = "END"
WARM = "WARM"


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# ------------------------------------------------------------------------------------ subscribers


@attrs.define
class Tally:
    latencies: list[float] = attrs.field(factory=list)
    resyncs: int = 0


@attrs.define(eq=False)
class Subscriber:
    """One subscriber: a real socket and a real websocket (wsproto), read by the shared select loop."""

    sock: socket.socket
    ws: WSConnection
    done: bool = False


def open_subscriber(url: str, *, receive_buffer: int | None = None) -> Subscriber:
    """Connect and handshake (blocking), then read up to the first frame: the stream is live."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((parts.hostname, parts.port))
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=f"{parts.hostname}:{parts.port}", target=f"{parts.path}?{parts.query}")))
    accepted = False
    while True:
        ws.receive_data(sock.recv(65536))
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                accepted = True
                if receive_buffer is not None:
                    sock.setblocking(False)
                    return Subscriber(sock, ws)  # the stalled one: never reads its first frame
            elif isinstance(event, TextMessage) and accepted:
                assert json.loads(event.data)["type"] in ("snapshot", "resumed"), event.data[:80]
                sock.setblocking(False)
                return Subscriber(sock, ws)
            elif not accepted:
                raise RuntimeError(f"handshake refused: {event!r}")


def run_subscribers(url: str, stall_url: str | None, count: int, seconds: float) -> None:
    """Every subscriber in one select loop: the harness must cost far less per frame than the server.

    A trio-websocket client per subscriber costs ~80 µs of this process's one core per frame, so 1,000
    of them would measure the harness (~80 ms per event), not the dashboard. Frames are still real
    websocket frames on real TCP connections, parsed by wsproto.
    """
    subscribers = [open_subscriber(url) for _ in range(count)]
    stalled = open_subscriber(stall_url, receive_buffer=4096) if stall_url is not None else None
    # This process only generates load: keep its garbage collector out of the numbers.
    gc.collect()
    gc.freeze()
    gc.disable()
    tally = Tally()
    selector = selectors.DefaultSelector()
    for sub in subscribers:
        selector.register(sub.sock, selectors.EVENT_READ, sub)
    print("READY", flush=True)
    remaining = count
    deadline = time.monotonic() + seconds
    while remaining and time.monotonic() < deadline:
        # Read every ready socket first, stamping each read, then parse: the stamp is when the bytes
        # reached this process, not when a serial parser got round to them (a browser parses on its own
        # core; parsing here costs ~16 µs a frame, which would otherwise add ~16 ms to the last of 1,000).
        batch = []
        for key, _ in selector.select(timeout=1.0):
            try:
                data = key.data.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            batch.append((key.data, data, now()))
        for sub, data, received in batch:
            sub.ws.receive_data(data or None)
            for event in sub.ws.events():
                if not isinstance(event, TextMessage) or sub.done:
                    continue
                frame = json.loads(event.data)
                if frame.get("type") == "snapshot":
                    tally.resyncs += 1  # fell behind: the END marker may be inside this snapshot's past
                    continue
                if frame.get("type") != "event":
                    continue
                body = frame["event"]["body"]
                if body.startswith(END):
                    sub.done = True
                    remaining -= 1
                elif not body.startswith(WARM):
                    # A read can hold several frames: each is as late as the read that brought it.
                    tally.latencies.append(received - float(body.split(" ", 1)[0]))
            if not data:
                selector.unregister(sub.sock)
    # Was the stalled socket cut by the server's send timeout? A reset shows on read, after the
    # kernel hands over what it had buffered.
    cut = None
    if stalled is not None:
        stalled.sock.settimeout(2.0)
        try:
            while stalled.sock.recv(1 << 20):
                pass
            cut = "closed"
        except ConnectionResetError:
            cut = "reset"
        except TimeoutError:
            cut = None
    for sub in subscribers:
        sub.sock.close()
    print(
        json.dumps(
            {
                "latencies": tally.latencies,
                "resyncs": tally.resyncs,
                "timed_out": remaining > 0,
                "stalled_closed": cut,
            }
        ),
        flush=True,
    )


# ---------------------------------------------------------------------------------------- daemon


class WriteProbe:
    """Times the server's side of a fan-out: until it has handed `target` event frames to the kernel.

    Polls the dashboard's own count (`DashboardServer.frames_written`) from a task of its own.
    """

    def __init__(self) -> None:
        self.target = 0
        self.start = 0
        self.done_at = 0.0
        self.servers: list[DashboardServer] = []
        original = DashboardServer.__init__

        def recording(server: DashboardServer, *args: Any, **kwargs: Any) -> None:
            original(server, *args, **kwargs)
            self.servers.append(server)

        DashboardServer.__init__ = recording  # type: ignore[method-assign]

    def written(self) -> int:
        return self.servers[-1].frames_written if self.servers else 0

    def arm(self, frames: int) -> None:
        self.target, self.start, self.done_at = frames, self.written(), 0.0

    async def watch(self) -> None:
        while True:
            await trio.sleep(0.0005)
            if self.target and not self.done_at and self.written() - self.start >= self.target:
                self.done_at = now()


async def run_case(args: argparse.Namespace, probe: WriteProbe, *, stall: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ht-bench-", dir="/tmp") as tmp:
        config = Config(
            state_dir=Path(tmp) / "state",
            runtime_dir=Path(tmp) / "run",
            dashboard_port=0,
            admin_group=None,
            synchronous="NORMAL",
        )
        async with open_hive(config) as hive:
            coord = hive.coordinator
            hub = coord._hub  # the benchmark emits straight on the hub: only fan-out is measured
            tune_garbage_collection()  # as `serve_daemon` does once the daemon is up
            # A snapshot of ~6 MiB (100 messages of 60 KiB) for whoever connects without resuming: the
            # stalled subscriber, which then sits in its first write until the send timeout cuts it.
            for i in range(100):
                await coord.send("bench", OPERATOR, f"{i} " + "z" * 60_000)
            base = dashboard_url(config)
            # Everyone else resumes from the current seq, so they start without a snapshot.
            live = stream_url(base, token=None, resume=ResumePoint(hub.current_seq(), coord.epoch))
            child = [sys.executable, __file__, "--role", "subscribers", "--url", live]
            child += ["--subscribers", str(args.subscribers), "--seconds", str(args.events / args.rate + 60)]
            if stall:
                child += ["--stall-url", stream_url(base, token=None, resume=None)]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe.watch)
                proc = await nursery.start(partial(trio.run_process, child, stdout=subprocess.PIPE, check=False))
                lines = proc_lines(proc)
                connect_started = now()
                line = await lines.__anext__()
                assert line == "READY", line
                connect_seconds = now() - connect_started
                pad = "." * args.body_bytes
                # Warm-up, not measured: first-use costs (imports, caches, socket buffers) are not fan-out.
                for _ in range(3):
                    hub.emit(SentEvent(sender="bench", recipient="all", body=f"{WARM} {pad}", at=time.time()))
                    await trio.sleep(1.0)
                interval = 1.0 / args.rate
                next_at = trio.current_time()
                fanouts = []
                for _ in range(args.events):
                    probe.arm(args.subscribers)
                    emitted = now()
                    hub.emit(SentEvent(sender="bench", recipient="all", body=f"{emitted} {pad}", at=time.time()))
                    next_at += interval
                    await trio.sleep_until(next_at)
                    if probe.done_at:
                        fanouts.append(probe.done_at - emitted)
                hub.emit(SentEvent(sender="bench", recipient="all", body=END, at=time.time()))
                result = json.loads(await lines.__anext__())
                dropped = hub.dropped_subscribers
                nursery.cancel_scope.cancel()
    lat = sorted(result["latencies"])
    q = statistics.quantiles(lat, n=100)
    fan = sorted(fanouts)
    return {
        "server_p50_ms": statistics.median(fan) * 1000 if fan else float("nan"),
        "server_max_ms": fan[-1] * 1000 if fan else float("nan"),
        "stall": stall,
        "samples": len(lat),
        "connect_s": connect_seconds,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "max_ms": lat[-1] * 1000,
        "dropped": dropped,
        "resyncs": result["resyncs"],
        "timed_out": result["timed_out"],
        "stalled_closed": result["stalled_closed"],
    }


async def floor(subscribers: int, body_bytes: int, rounds: int = 10) -> float:
    """The same fan-out at its leanest: one trio task per socketpair, wsproto framing, a bare send_all.

    What trio itself costs per frame on this machine, to tell the server's layers from the language.
    """
    pairs = [socket.socketpair() for _ in range(subscribers)]
    streams = [trio.SocketStream(trio.socket.from_stdlib_socket(a)) for a, _ in pairs]
    channels = [trio.open_memory_channel[str](8) for _ in range(subscribers)]
    written = 0
    all_written = trio.Event()

    async def pump(i: int) -> None:
        nonlocal written, all_written
        framing = FrameProtocol(client=False, extensions=[])
        async for text in channels[i][1]:
            await streams[i].send_all(framing.send_data(text, fin=True))
            written += 1
            if written == subscribers:
                all_written.set()

    times = []
    async with trio.open_nursery() as nursery:
        for i in range(subscribers):
            nursery.start_soon(pump, i)
        await trio.sleep(0.2)
        for _ in range(rounds):
            written, all_written = 0, trio.Event()
            started = now()
            for send, _ in channels:
                send.send_nowait("." * body_bytes)
            await all_written.wait()
            times.append(now() - started)
            for _, peer in pairs:
                peer.recv(1 << 20)
        nursery.cancel_scope.cancel()
    for a, b in pairs:
        a.close()
        b.close()
    return statistics.median(times)


async def proc_lines(proc: trio.Process) -> Any:
    assert proc.stdout is not None
    buffer = b""
    async for chunk in proc.stdout:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode()


async def bench(args: argparse.Namespace) -> None:
    probe = WriteProbe()
    rows = [await run_case(args, probe, stall=False), await run_case(args, probe, stall=True)]
    floor_seconds = await floor(args.subscribers, args.body_bytes)
    cpu = platform.processor() or platform.machine()
    print(
        f"\n{args.subscribers} subscribers, {args.events} events at {args.rate}/s, {args.body_bytes}-byte bodies; "
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}\n"
    )
    print(
        "| case | samples | connect all (s) | p50 (ms) | p99 (ms) | max (ms) | server fan-out p50 / max (ms) "
        "| hub drops | resyncs | stalled one |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        case = "one stalled subscriber" if r["stall"] else "all reading"
        fates = {"reset": "cut (reset) by the send timeout", "closed": "closed", None: "still open"}
        fate = "—" if not r["stall"] else fates[r["stalled_closed"]]
        print(
            f"| {case} | {r['samples']} | {r['connect_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['max_ms']:.1f} | {r['server_p50_ms']:.1f} / {r['server_max_ms']:.1f} "
            f"| {r['dropped']} | {r['resyncs']} | {fate} |"
        )
        if r["timed_out"]:
            print(f"|  ({case}: some subscribers never saw the END marker) |")
    print(
        f"\nFloor (trio + wsproto + socketpairs, no server): {floor_seconds * 1000:.1f} ms to write one event "
        f"to {args.subscribers} sockets, {floor_seconds * 1e6 / args.subscribers:.0f} µs a frame."
    )
    summary = {
        "subscribers": args.subscribers,
        "p50_ms": rows[0]["p50_ms"],
        "p99_ms": rows[0]["p99_ms"],
        "stalled_p99_ms": rows[1]["p99_ms"],
        "floor_ms": floor_seconds * 1000,
    }
    print("RESULT " + json.dumps(summary), flush=True)  # for scripts/bench_all.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["bench", "subscribers"], default="bench")
    parser.add_argument("--url")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=60)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--body-bytes", type=int, default=512)
    parser.add_argument("--stall-url")
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.subscribers + 256)), hard))
    if args.role == "subscribers":
        run_subscribers(args.url, args.stall_url, args.subscribers, args.seconds)
    else:
        trio.run(bench, args)


if __name__ == "__main__":
    main()
