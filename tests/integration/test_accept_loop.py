"""The socket servers' accept loop: it parks in `wait_readable` and accepts without blocking, on real sockets."""

from __future__ import annotations

import errno
import socket
from functools import partial
from pathlib import Path

import attrs
import pytest
import trio

from hive_trio.sockets import unix_listener


class AbortsFirst:
    """The listening socket, whose first accept(2) fails as a connection reset before it was taken would."""

    def __init__(self, raw: socket.socket, error: int) -> None:
        self.raw = raw
        self.error = error
        self.failures = 0

    def accept(self) -> tuple[socket.socket, object]:
        if not self.failures:
            self.failures += 1
            raise OSError(self.error, "injected")
        return self.raw.accept()


async def echo_once(stream: trio.SocketStream) -> None:
    await stream.send_all(await stream.receive_some(100))


@pytest.mark.parametrize("error", [errno.ECONNABORTED, errno.EPROTO])
async def test_a_connection_gone_before_accept_is_skipped_and_the_next_is_served(tmp_path: Path, error: int) -> None:
    path = tmp_path / "s.sock"
    bound = await unix_listener.bind_unix_listener(path, mode=0o660)
    flaky = AbortsFirst(bound.raw, error)
    served = attrs.evolve(bound, raw=flaky)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(unix_listener.serve_bound_listener, served, echo_once, what="test"))
        with trio.fail_after(10):
            client = await trio.open_unix_socket(str(path))
            await client.send_all(b"ping")
            assert await client.receive_some(100) == b"ping"
        assert flaky.failures == 1
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_an_accept_error_that_is_neither_skipped_nor_capacity_ends_the_server(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    bound = await unix_listener.bind_unix_listener(path, mode=0o660)
    served = attrs.evolve(bound, raw=AbortsFirst(bound.raw, errno.EBADF))
    with (
        trio.fail_after(10),
        pytest.RaisesGroup(pytest.RaisesExc(OSError, check=lambda e: e.errno == errno.EBADF), flatten_subgroups=True),
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(unix_listener.serve_bound_listener, served, echo_once, what="test"))
            client = await trio.open_unix_socket(str(path))
            await client.aclose()
