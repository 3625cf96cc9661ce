"""The dashboard's one-writer fan-out: frames stay whole, a full socket falls back, nothing is missed.

Real TCP sockets on loopback and a real hive; the existing stream guarantees (order, resync, stall cut,
1001 on shutdown) are in test_dashboard_stream.py and hold unchanged.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import pytest
import trio
import trio.testing
from dashboard_support import running_hive, url_of
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage
from wsproto.frame_protocol import FrameProtocol, Opcode

from hive_trio.dashboard.protocol import stream_url, text_frame
from hive_trio.dashboard.transport import ConnectionStream
from hive_trio.records import SentEvent
from hive_trio.rules.config import Config

pytestmark = pytest.mark.timeout(30)


@asynccontextmanager
async def tcp_pair(
    *, send_buffer: int = 16 * 1024, receive_buffer: int = 4096
) -> AsyncIterator[tuple[ConnectionStream, socket.socket]]:
    """A `ConnectionStream` on the accepted side of a loopback TCP connection, and the blocking peer."""
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    listener.close()
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    # Small buffers fill fast; reading megabytes through them is slow (tiny TCP windows).
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    accepted.setblocking(False)
    stream = ConnectionStream(trio.SocketStream(trio.socket.from_stdlib_socket(accepted)), stall_timeout=30.0)
    try:
        yield stream, peer
    finally:
        stream.abort()
        peer.close()


def read_all(peer: socket.socket, size: int) -> bytes:
    peer.settimeout(10.0)
    data = bytearray()
    while len(data) < size:
        chunk = peer.recv(1 << 20)
        assert chunk, "the stream closed early"
        data += chunk
    return bytes(data)


async def test_send_nowait_keeps_a_frame_whole_when_the_kernel_takes_only_part() -> None:
    async with tcp_pair() as (stream, peer):
        frames = [bytes([65 + i % 26]) * 10_000 for i in range(200)]
        taken: list[bytes] = []
        for frame in frames:
            if not stream.send_nowait(frame):
                break
            taken.append(frame)
        # The peer reads nothing, so the kernel filled up: the last frame taken is half written.
        assert stream.pending
        assert len(taken) < len(frames)
        # Its tail must go first: nothing may be written in the middle of a frame.
        assert not stream.send_nowait(b"cut in")
        tail = b"after the tail"
        expected = b"".join(taken) + tail
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, tail)
            got = await trio.to_thread.run_sync(read_all, peer, len(expected))
        assert got == expected
        assert not stream.pending
        assert stream.send_nowait(b"direct again")
        assert await trio.to_thread.run_sync(read_all, peer, 12) == b"direct again"


async def test_send_nowait_waits_while_another_write_holds_the_stream() -> None:
    async with tcp_pair(send_buffer=64 * 1024, receive_buffer=256 * 1024) as (stream, peer):
        big = b"b" * (2 << 20)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, big)
            await trio.testing.wait_all_tasks_blocked()
            assert not stream.send_nowait(b"not now")  # the big write holds the stream
            got = await trio.to_thread.run_sync(read_all, peer, len(big))
        assert got == big
        assert stream.send_nowait(b"now")


async def test_send_nowait_on_a_cut_stream_is_refused() -> None:
    async with tcp_pair() as (stream, peer):
        stream.abort()
        assert not stream.send_nowait(b"late")
        with pytest.raises(trio.BrokenResourceError):
            await stream.flush()
        assert peer  # the peer sees a reset; what matters is that nothing was written


def test_text_frame_is_one_whole_unmasked_text_frame_wsproto_reads() -> None:
    for text in ["", "hello", "é" * 200, "x" * 70_000]:
        frame = text_frame(text)
        assert frame[0] == 0x81 and not frame[1] & 0x80  # FIN + text, unmasked (a server's frame)
        reader = FrameProtocol(client=True, extensions=[])
        reader.receive_bytes(frame)
        (got,) = list(reader.received_frames())
        assert got.opcode is Opcode.TEXT and got.frame_finished and got.message_finished
        assert got.payload == text
        assert text_frame(text) == frame  # the same bytes every time, for every connection


class RawSubscriber:
    """A websocket subscriber on a real socket with a 32 KiB receive buffer, read only when asked."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        self.sock.connect((parts.hostname, parts.port))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=parts.netloc, target=f"{parts.path}?{parts.query}")))
        self.frames: list[dict[str, object]] = []
        self._text = ""

    def read_until(self, done: object) -> None:
        self.sock.settimeout(10.0)
        while not done(self.frames):  # type: ignore[operator]
            data = self.sock.recv(1 << 20)
            assert data, "the server closed the stream"
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    self._text += event.data  # wsproto hands out a frame in pieces as they arrive
                    if event.message_finished:
                        self.frames.append(json.loads(self._text))
                        self._text = ""
                else:
                    assert isinstance(event, AcceptConnection), event


async def test_a_subscriber_whose_socket_fills_up_falls_back_and_misses_nothing(config: Config) -> None:
    """Events past what the kernel holds wait in the subscription; once read, every one arrives in order."""
    async with running_hive(config, subscriber_buffer=64) as hive:
        coord = hive.coordinator
        url = stream_url(url_of(hive), token=None, resume=None)
        slow = await trio.to_thread.run_sync(RawSubscriber, url)
        fast = await trio.to_thread.run_sync(RawSubscriber, url)
        await trio.to_thread.run_sync(slow.read_until, lambda f: len(f) >= 1)
        await trio.to_thread.run_sync(fast.read_until, lambda f: len(f) >= 1)
        start = slow.frames[0]["seq"]
        assert isinstance(start, int)
        body = "z" * 30_000
        # 40 frames of 30 KB is far more than the slow socket's kernel buffers, and less than its bound (64).
        for i in range(40):
            coord._hub.emit(SentEvent(sender="a", recipient="b", body=f"{i} {body}", at=time.time()))
            if i % 8 == 7:
                await trio.sleep(0.05)  # bursts: the fan-out writes between them
        last = coord.current_seq()

        def reached_last(frames: list[dict[str, object]]) -> bool:
            return any(f.get("type") == "event" and f["event"]["seq"] == last for f in frames)  # type: ignore[index]

        await trio.to_thread.run_sync(fast.read_until, reached_last)
        await trio.sleep(0.5)  # the slow one's task is blocked on its full socket meanwhile
        await trio.to_thread.run_sync(slow.read_until, reached_last)
        for sub in (slow, fast):
            kinds = [f["type"] for f in sub.frames]
            assert kinds == ["snapshot"] + ["event"] * (len(kinds) - 1), "no resync, nothing but events"
            seqs = [f["event"]["seq"] for f in sub.frames[1:]]  # type: ignore[index]
            assert seqs == list(range(start + 1, last + 1))
            bodies = [f["event"]["body"] for f in sub.frames[1:]]  # type: ignore[index]
            assert bodies == [f"{i} {body}" for i in range(40)]
        assert coord._hub.dropped_subscribers == 0
        for sub in (slow, fast):
            sub.sock.close()


async def test_events_and_action_results_share_a_socket_as_whole_frames(config: Config) -> None:
    """Results (written by the connection's task) and events (by the fan-out) never cut into each other."""
    async with running_hive(config) as hive:
        coord = hive.coordinator
        await coord.record_spawn("alpha")
        url = stream_url(url_of(hive), token=None, resume=None)
        sub = await trio.to_thread.run_sync(RawSubscriber, url)
        await trio.to_thread.run_sync(sub.read_until, lambda f: len(f) >= 1)
        for req in range(30):
            action = json.dumps({"op": "send", "req": req, "to": "alpha", "body": f"m{req} " + "q" * 3000})
            sub.sock.sendall(sub.ws.send(TextMessage(data=action)))
            coord._hub.emit(SentEvent(sender="a", recipient="b", body="p" * 20_000, at=time.time()))

        def all_results(frames: list[dict[str, object]]) -> bool:
            return sum(f.get("type") == "result" for f in frames) == 30

        await trio.to_thread.run_sync(sub.read_until, all_results)
        results = [f for f in sub.frames if f["type"] == "result"]
        assert sorted(f["req"] for f in results) == list(range(30))  # type: ignore[type-var]
        assert all(f["ok"] for f in results)
        seqs = [f["event"]["seq"] for f in sub.frames if f["type"] == "event"]  # type: ignore[index]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        sub.sock.close()
