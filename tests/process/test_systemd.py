"""The daemon under systemd, with systemd played by the test: a real AF_UNIX datagram socket the test
binds as `$NOTIFY_SOCKET`, real signals, real files.

READY=1 must arrive only once host.sock and every agent socket answer; WATCHDOG=1 must keep coming at
half of `$WATCHDOG_USEC`; SIGTERM says STOPPING=1; SIGHUP reopens the daemon's log file and the agents'
output logs, as logrotate needs.
"""

from __future__ import annotations

import itertools
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from hive_trio.testing import open_daemon_process, short_temp_dir

pytestmark = pytest.mark.timeout(90)


async def until(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    """Poll what a child process does to files and sockets (no event to wait on across processes)."""
    with trio.fail_after(within):
        for _ in range(100_000):
            if condition():
                return
            await trio.sleep(0.05)


async def can_connect(path: Path) -> bool:
    try:
        sock = await trio.open_unix_socket(str(path))
    except OSError:
        return False
    await sock.aclose()
    return True


async def test_ready_comes_once_every_socket_answers_and_the_watchdog_keeps_coming() -> None:
    with short_temp_dir("hts-") as directory:
        # A first run leaves an agent in the roster, so the second has an agent socket to bind at start.
        async with open_daemon_process(directory, "--agent-command", "exec sleep 3600") as daemon:
            assert (await daemon.run_cli("spawn", "alpha")).returncode == 0
        notify_path = directory / "notify.sock"
        notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        await notify.bind(str(notify_path))
        env = {"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "300000"}
        received: list[tuple[float, str]] = []
        sockets_at_ready: list[bool] = []
        run = directory / "run"

        async def listen() -> None:
            while True:
                data = await notify.recv(4096)
                text = data.decode()
                received.append((trio.current_time(), text))
                if "READY=1" in text.splitlines():
                    sockets_at_ready.append(await can_connect(run / "host.sock"))
                    sockets_at_ready.append(await can_connect(run / "agents" / "alpha" / "mcp.sock"))
                    sockets_at_ready.append(await can_connect(run / "manager" / "mcp.sock"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            async with open_daemon_process(directory, "--agent-command", "exec sleep 3600", env=env) as daemon:
                await until(lambda: sum("WATCHDOG=1" in text for _, text in received) >= 4, within=20)
                daemon.process.send_signal(signal.SIGTERM)
                with trio.fail_after(20):
                    await daemon.process.wait()
            await until(lambda: any("STOPPING=1" in text for _, text in received), within=5)
            nursery.cancel_scope.cancel()
        notify.close()

    states = [text.splitlines()[0] for _, text in received]
    assert states[0] == "READY=1", states  # nothing before readiness, not even a watchdog ping
    assert sockets_at_ready == [True, True, True]
    pings = [at for at, text in received if text == "WATCHDOG=1"]
    assert len(pings) >= 4
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert all(0.05 < gap < 1.0 for gap in gaps), gaps  # about every 0.15 s (half of 0.3 s)
    assert states[-1] == "STOPPING=1"


async def test_sighup_reopens_the_daemon_log_and_the_agents_logs() -> None:
    with short_temp_dir("hth-") as directory:
        daemon_log = directory / "daemon.log"
        ticker = "exec sh -c 'while :; do echo tick; sleep 0.1; done'"
        args = ("--agent-command", ticker, "--log-file", str(daemon_log))
        async with open_daemon_process(directory, *args) as daemon:
            assert (await daemon.run_cli("spawn", "alpha")).returncode == 0
            agent_log = daemon.state_dir / "logs" / "alpha.log"
            await until(lambda: agent_log.exists() and b"tick" in agent_log.read_bytes())
            # logrotate's default: move the files away, then ask the daemon to reopen.
            daemon_log.rename(directory / "daemon.log.1")
            agent_log.rename(agent_log.with_name("alpha.log.old"))
            daemon.process.send_signal(signal.SIGHUP)
            await until(lambda: daemon_log.exists() and b"received SIGHUP" in daemon_log.read_bytes())
            await until(lambda: agent_log.exists() and b"tick" in agent_log.read_bytes())
            assert daemon.process.returncode is None  # SIGHUP is not a reason to stop
            assert (await daemon.run_cli("status")).returncode == 0
        assert b"hive-trio is up" in (directory / "daemon.log.1").read_bytes()
