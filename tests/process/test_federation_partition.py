"""A network partition between two hives, each daemon in its own network namespace (`ip netns`).

The test makes the namespaces and a veth pair between them, runs one `hive-trio daemon` in each (each
with its nats-server), cuts the link while the sender keeps sending, and heals it: every acknowledged
send arrives once, in order. Skipped, with the reason, where namespaces cannot be made (not root, no
`ip`, a container without CAP_SYS_ADMIN); CI runs it as root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import trio
from federation_support import LEAF_PASSWORD, inbox, wait_until

from hive_trio.clients.host import HostClientError, host_request

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

LEAF_PORT = 17422


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@contextmanager
def two_namespaces() -> Iterator[tuple[str, str]]:
    if shutil.which("ip") is None:
        pytest.skip("network namespaces: the `ip` command (iproute2) is not installed")
    if os.geteuid() != 0:
        pytest.skip("network namespaces: `ip netns add` needs root (CI runs this test as root)")
    tag = f"{os.getpid() % 100000}"
    ns_a, ns_b = f"hfa{tag}", f"hfb{tag}"
    made = _ip("netns", "add", ns_a)
    if made.returncode != 0:
        pytest.skip(f"network namespaces cannot be made here: {made.stderr.strip()}")
    try:
        _ip("netns", "add", ns_b)
        steps = [
            ("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}"),
            ("link", "set", f"va{tag}", "netns", ns_a),
            ("link", "set", f"vb{tag}", "netns", ns_b),
            ("-n", ns_a, "addr", "add", "10.77.0.1/24", "dev", f"va{tag}"),
            ("-n", ns_b, "addr", "add", "10.77.0.2/24", "dev", f"vb{tag}"),
            ("-n", ns_a, "link", "set", f"va{tag}", "up"),
            ("-n", ns_b, "link", "set", f"vb{tag}", "up"),
            ("-n", ns_a, "link", "set", "lo", "up"),
            ("-n", ns_b, "link", "set", "lo", "up"),
        ]
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                pytest.skip(f"network namespaces: `ip {' '.join(step)}` failed: {done.stderr.strip()}")
        yield ns_a, ns_b
    finally:
        _ip("netns", "del", ns_a)
        _ip("netns", "del", ns_b)


def set_link(ns: str, up: bool) -> None:
    dev = f"va{ns[3:]}"
    done = _ip("-n", ns, "link", "set", dev, "up" if up else "down")
    assert done.returncode == 0, done.stderr


@asynccontextmanager
async def daemon_in(ns: str, directory: Path, config: Path) -> AsyncIterator[Path]:
    await trio.Path(directory).mkdir(exist_ok=True)
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "hive_trio", "daemon"]
    argv += ["--state-dir", str(directory / "state"), "--runtime-dir", str(directory / "run")]
    argv += ["--config", str(config), "--agent-command", "exec sleep 600"]
    env = {**os.environ, "HIVE_TRIO_DASHBOARD_ENABLED": "false", "HIVE_TRIO_ADMIN_GROUP": ""}
    log = (directory / "daemon.log").open("wb")
    proc = await trio.lowlevel.open_process(argv, env=env, stdout=log, stderr=log)
    sock = directory / "run" / "host.sock"
    try:

        async def up() -> bool:
            try:
                await host_request(sock, "list")
            except (HostClientError, OSError):
                return False
            return True

        await wait_until(up, seconds=30, interval=0.1)
        yield sock
    finally:
        with trio.CancelScope(shield=True):
            proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            log.close()


async def test_a_partition_between_namespaces_heals_and_the_outbox_drains(short_tmp: Path) -> None:
    with two_namespaces() as (ns_a, ns_b):
        common = "roster_interval = 0.2\npublish_timeout = 0.5\nack_wait = 2.0\n"
        conf_b = short_tmp / "b.toml"
        conf_b.write_text(
            f'[federation]\nenabled = true\nhive = "b"\nleaf_listen = "10.77.0.2:{LEAF_PORT}"\n{common}'
            f'[[federation.leaf_peers]]\nhive = "a"\npassword = "{LEAF_PASSWORD}"\n'
        )
        conf_a = short_tmp / "a.toml"
        conf_a.write_text(
            f'[federation]\nenabled = true\nhive = "a"\n{common}'
            f'[[federation.leaf_remotes]]\nurl = "nats-leaf://10.77.0.2:{LEAF_PORT}"\npassword = "{LEAF_PASSWORD}"\n'
        )
        async with daemon_in(ns_b, short_tmp / "b", conf_b) as sock_b:
            await host_request(sock_b, "spawn", name="bob")
            async with daemon_in(ns_a, short_tmp / "a", conf_a) as sock_a:

                async def linked() -> bool:
                    r = await host_request(sock_a, "agent_status")
                    return any(x["name"] == "bob" for x in r.get("remote_agents", []))

                await wait_until(linked, seconds=30)
                await host_request(sock_a, "send", to="bob@b", body="before")
                set_link(ns_a, up=False)
                for i in range(30):
                    await host_request(sock_a, "send", to="bob@b", body=f"during {i}")
                await trio.sleep(1.0)
                status = await host_request(sock_a, "agent_status")
                assert status["link"]["outbox_depth"] > 0  # held while the hives cannot reach each other
                set_link(ns_a, up=True)

                async def drained() -> bool:
                    r = await host_request(sock_a, "agent_status")
                    return bool(r["link"]["outbox_depth"] == 0)

                await wait_until(drained, seconds=40, interval=0.2)
                db_b = short_tmp / "b" / "state" / "hive.db"

                def remote() -> list[str]:
                    return [body for sender, body in inbox(db_b, "bob") if sender == "operator@a"]

                async def arrived() -> bool:
                    return len(remote()) >= 31

                await wait_until(arrived, seconds=10)
                await trio.sleep(0.5)
                got = remote()
                assert got == ["before", *[f"during {i}" for i in range(30)]]
