"""Two real `hive-trio daemon` processes, each supervising its own nats-server, linked by leafnode.

A burst of remote sends runs while SIGKILL hits the receiving daemon, the sending daemon, then each
nats-server on its own (its daemon restarts it). Every
send the sender acknowledged arrives exactly once, in order; duplicates from redelivery are absorbed.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio
from federation_support import LEAF_PASSWORD, inbox, sigkill_nats, wait_until

from hive_trio.clients.host import HostClientError, host_request
from hive_trio.federation.server import free_port
from hive_trio.testing import DaemonProcess, open_daemon_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def write_configs(root: Path) -> tuple[Path, Path]:
    leaf = free_port()
    common = "roster_interval = 0.2\npublish_timeout = 0.5\nack_wait = 2.0\n"
    conf_b = root / "b.toml"
    conf_b.write_text(
        f'[federation]\nenabled = true\nhive = "b"\nleaf_listen = "127.0.0.1:{leaf}"\n{common}'
        f'[[federation.leaf_peers]]\nhive = "a"\npassword = "{LEAF_PASSWORD}"\n'
    )
    conf_a = root / "a.toml"
    conf_a.write_text(
        f'[federation]\nenabled = true\nhive = "a"\n{common}'
        f'[[federation.leaf_remotes]]\nurl = "nats-leaf://127.0.0.1:{leaf}"\npassword = "{LEAF_PASSWORD}"\n'
    )
    return conf_a, conf_b


class Daemons:
    """Start, SIGKILL and restart the two daemons; each runs in its own task, so contexts nest properly."""

    def __init__(self, nursery: trio.Nursery, root: Path, conf_a: Path, conf_b: Path) -> None:
        self.nursery = nursery
        self.root = root
        self.confs = {"a": conf_a, "b": conf_b}
        self.kills: dict[str, trio.Event] = {}
        self.done: dict[str, trio.Event] = {}

    async def start(self, hive: str) -> DaemonProcess:
        proc: DaemonProcess = await self.nursery.start(self._run, hive)
        return proc

    async def _run(self, hive: str, *, task_status: trio.TaskStatus[DaemonProcess]) -> None:
        directory = self.root / hive
        directory.mkdir(exist_ok=True)
        kill, done = self.kills[hive], self.done[hive] = trio.Event(), trio.Event()
        args = ("--config", str(self.confs[hive]), "--agent-command", "exec sleep 600")
        try:
            async with open_daemon_process(directory, *args) as proc:
                task_status.started(proc)
                await kill.wait()
                os.kill(proc.process.pid, signal.SIGKILL)
                await proc.process.wait()
        finally:
            done.set()

    async def kill(self, hive: str) -> None:
        self.kills[hive].set()
        await self.done[hive].wait()


async def test_sigkill_of_either_daemon_mid_burst_loses_no_acknowledged_message(short_tmp: Path) -> None:
    conf_a, conf_b = write_configs(short_tmp)
    db_b = short_tmp / "b" / "state" / "hive.db"
    sock_a = short_tmp / "a" / "run" / "host.sock"
    async with trio.open_nursery() as daemons_nursery:
        daemons = Daemons(daemons_nursery, short_tmp, conf_a, conf_b)
        await daemons.start("b")
        await host_request(short_tmp / "b" / "run" / "host.sock", "spawn", name="bob")
        await daemons.start("a")

        async def linked() -> bool:
            try:
                r = await host_request(sock_a, "agent_status")
            except HostClientError:
                return False
            return any(x["name"] == "bob" for x in r.get("remote_agents", []))

        await wait_until(linked, seconds=20)
        acked: list[str] = []
        attempted = 0
        stop = trio.Event()

        async def burst() -> None:
            nonlocal attempted
            while not stop.is_set():
                body = f"m{attempted}"
                attempted += 1
                try:
                    await host_request(sock_a, "send", to="bob@b", body=body)
                except (HostClientError, OSError):
                    await trio.sleep(0.05)  # the sender is down: not acknowledged, may or may not exist
                    continue
                acked.append(body)
                await trio.sleep(0.005)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(burst)
            await trio.sleep(0.6)
            await daemons.kill("b")  # the receiver, with its nats-server (PDEATHSIG)
            await trio.sleep(0.6)
            await daemons.start("b")
            await trio.sleep(0.6)
            await daemons.kill("a")  # the sender, with its nats-server and unforwarded outbox rows
            await daemons.start("a")
            await trio.sleep(0.6)
            sigkill_nats(short_tmp / "b" / "state")  # each nats-server alone; its daemon restarts it
            await trio.sleep(0.6)
            sigkill_nats(short_tmp / "a" / "state")
            await trio.sleep(0.6)
            stop.set()

        async def all_acked_arrived() -> bool:
            got = {body for _, body in inbox(db_b, "bob")}
            return set(acked) <= got

        await wait_until(all_acked_arrived, seconds=30, interval=0.2)
        await trio.sleep(1.0)
        got = [body for sender, body in inbox(db_b, "bob") if sender == "operator@a"]
        assert len(got) == len(set(got)), "a message was delivered twice"
        assert set(acked) <= set(got)
        # Per-recipient order is send order across the crashes too.
        assert got == sorted(got, key=lambda b: int(b[1:]))
        assert len(acked) > 50
        print(f"sends tried {attempted}, acknowledged {len(acked)}, delivered {len(got)} (none twice)")
        daemons_nursery.cancel_scope.cancel()
