"""Faults from outside: clients that vanish mid-reply or never read, a full or read-only disk, a storm of
connections, a dashboard subscriber lost mid-send. Each time a clear error reaches whoever asked, the
daemon stays up, nothing committed is lost, and it recovers once the fault clears. docs/RELIABILITY.md
lists what each test shows."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
import trio.testing
from lifecycle_support import commit_file, helper_events, lifecycle_config

import hive_trio.store.broker
from hive_trio.clients.host import HostRefused, host_request
from hive_trio.clients.mcp import ToolError, open_agent_client
from hive_trio.daemon import open_hive
from hive_trio.errors import StorageError
from hive_trio.lifecycle import Lifecycle, config_repos
from hive_trio.records import ApprovalKind, ApprovalStatus, TransientKind
from hive_trio.testing import DaemonProcess, InProcessHive, open_daemon_process, open_test_hive, short_temp_dir

HELLO = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}


@pytest.fixture
def hive_agents() -> Sequence[str]:
    return ("alpha", "beta")


def request(request_id: int, tool: str, **arguments: Any) -> bytes:
    payload = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    return json.dumps(payload).encode() + b"\n"


async def raw_handshake(stream: trio.SocketStream) -> None:
    await stream.send_all(
        json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": HELLO}).encode() + b"\n"
    )
    buffer = b""
    while b"\n" not in buffer:
        buffer += await stream.receive_some()
    await stream.send_all(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')


async def eventually(check: Callable[[], bool], *, within: float = 10.0) -> None:
    """Poll `check` (state in another process or thread has no event to wait on) until it holds."""
    with trio.fail_after(within):
        while not check():  # noqa: ASYNC110 - nothing to wait on: the state is outside this task's reach
            await trio.sleep(0.01)


def connections_served() -> int:
    """Socket connections this trio run still serves (`trio.serve_listeners` handler tasks, by name)."""

    def tasks(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                yield child
                yield from tasks(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return sum(t.name.endswith("._run_handler") for t in tasks(root))


async def pending(hive: InProcessHive, name: str) -> int:
    rows = (await hive.host("agent_status"))["agent_statuses"]
    return int(next(r["pending_messages"] for r in rows if r["name"] == name))


# ------------------------------------------------------------------------------ a client gone mid-reply


async def test_a_client_gone_halfway_through_its_replies_loses_nothing(hive: InProcessHive) -> None:
    # test_agent_socket covers a client gone before its reply. Here the client pipelines 16 `recv`s of
    # ~120 KB replies (two 60 KB bodies: a reply's bodies stay within an eighth of the frame limit), reads
    # 4 KB and leaves while the daemon is still writing: far more than the socket buffers hold.
    body = "m" * 60_000
    async with hive.open_agent("alpha") as alpha:
        for i in range(32):
            await alpha.call("send", to="beta", body=f"{i:02d}{body}")
    stream = await trio.open_unix_socket(str(hive.socket_path("beta")))
    await raw_handshake(stream)
    await stream.send_all(b"".join(request(i, "recv", max=32) for i in range(1, 17)))
    assert len(await stream.receive_some(4096)) > 0  # the first reply has started
    await stream.aclose()

    async def in_flight() -> list[str]:
        rows = await hive.coordinator._broker.recent(recipient="beta", limit=32)
        return [m.body[:2] for m in rows if m.delivered_at is not None]

    # Replies the kernel took in full count as delivered (the daemon cannot know the client never read
    # them): they stay in flight until a requeue. The one cut off mid-write, and those never started,
    # go straight back, not marked redelivered: the agent never saw them.
    await eventually(lambda: connections_served() == 0)  # the dead connection's calls have all ended
    held = await in_flight()
    assert len(held) <= 8, "more counts as delivered than the socket buffers could have taken"
    async with hive.open_agent("beta") as beta:
        # The agent's harness restarts and requeues what it may have seen; then it reads everything.
        assert (await beta.call("requeue_inflight"))["requeued"] == len(held)
        got = []
        while batch := (await beta.call("recv", max=32))["messages"]:
            got += batch
    assert sorted(m["body"][:2] for m in got) == [f"{i:02d}" for i in range(32)]  # each once, nothing lost
    assert sorted(m["body"][:2] for m in got if m["redelivered"]) == sorted(held)
    print(f"\nclient gone mid-reply: {32 - len(held)} released at once, {len(held)} in flight until requeued")


# ------------------------------------------------------------------------------ a full or read-only disk


class DiskFault:
    """Fill the disk under `state_dir` and clear it again.

    As root (CI), `state_dir` is a 4 MiB tmpfs and a ballast file fills it: sqlite meets a real ENOSPC.
    Where mounting is not allowed, `PRAGMA max_page_count` gives sqlite the same SQLITE_FULL.
    """

    def __init__(self, state_dir: Path, *, want_tmpfs: bool) -> None:
        self.state_dir = state_dir
        self.want_tmpfs = want_tmpfs
        self.mounted = False
        self.hive: InProcessHive | None = None

    @property
    def how(self) -> str:
        return "tmpfs" if self.mounted else "max_page_count"

    def mount(self) -> None:
        self.state_dir.mkdir(parents=True)
        if not self.want_tmpfs:
            return
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(self.state_dir)],
            capture_output=True,
            check=False,
        )
        self.mounted = result.returncode == 0
        if not self.mounted:
            warnings.warn(
                f"cannot mount a tmpfs ({result.stderr.decode().strip()}); using max_page_count", stacklevel=1
            )

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.state_dir)], check=True)

    @property
    def ballast(self) -> Path:
        return self.state_dir / "ballast"

    def fill(self) -> None:
        if not self.mounted:
            assert self.hive is not None
            writer = self.hive.coordinator._db._writer
            writer.pragma("max_page_count", writer.pragma("page_count"))
            return
        chunk = b"\0" * 65536
        with open(self.ballast, "wb", buffering=0) as fh:
            while True:
                try:
                    fh.write(chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    chunk = chunk[: len(chunk) // 2]
                    if not chunk:
                        return

    def clear(self) -> None:
        if not self.mounted:
            assert self.hive is not None
            self.hive.coordinator._db._writer.pragma("max_page_count", 1 << 30)
            return
        self.ballast.unlink()


@contextlib.asynccontextmanager
async def hive_on_a_small_disk(directory: Path, *, tmpfs: bool) -> AsyncIterator[tuple[InProcessHive, DiskFault]]:
    fault = DiskFault(directory / "state", want_tmpfs=tmpfs)
    fault.mount()
    try:
        async with open_test_hive(agents=["alpha", "beta"], directory=directory) as hive:
            fault.hive = hive
            yield hive, fault
    finally:
        fault.unmount()


@pytest.mark.parametrize("tmpfs", [True, False], ids=["tmpfs-ballast", "max_page_count"])
async def test_a_full_disk_is_a_clear_error_and_nothing_acknowledged_is_lost(tmpfs: bool) -> None:
    with short_temp_dir("hf-") as directory:
        async with hive_on_a_small_disk(directory, tmpfs=tmpfs) as (hive, disk):
            acknowledged: list[str] = []
            async with hive.open_agent("alpha") as alpha:
                await alpha.call("send", to="beta", body="before")
                acknowledged.append("before")
                disk.fill()
                refusal = None
                for i in range(2000):  # sqlite may still reuse WAL pages it owns before it needs new ones
                    try:
                        await alpha.call("send", to="beta", body=f"{i}:" + "x" * 8000)
                    except ToolError as exc:
                        refusal = str(exc)
                        break
                    acknowledged.append(f"{i}:" + "x" * 8000)
                assert refusal == "could not commit to hive.db: the disk is full; nothing was changed", disk.how
                with pytest.raises(HostRefused, match="the disk is full"):
                    await hive.host("send", to="beta", body="y" * 8000)
                # Reads still work, and so does the daemon: other sockets, host.sock, the same connection.
                assert (await alpha.call("whoami"))["name"] == "alpha"
                assert await pending(hive, "beta") == len(acknowledged)
                async with hive.open_agent("beta") as beta:
                    # recv stamps delivered_at, a write: on a full filesystem sqlite cannot append that
                    # to the WAL, and the whole delivery is refused. (max_page_count limits only the
                    # database's own pages, so there it goes through.)
                    got: list[str] = []
                    recv_refused = None
                    for _ in range(10):
                        try:
                            got += [m["body"] for m in (await beta.call("recv", max=32))["messages"]]
                        except ToolError as exc:
                            recv_refused = str(exc)
                            break
                    assert recv_refused is not None or not disk.mounted
                    assert recv_refused in (None, refusal)
                    disk.clear()
                    await alpha.call("send", to="beta", body="after")
                    acknowledged.append("after")
                    while batch := (await beta.call("recv", max=32))["messages"]:
                        got += [m["body"] for m in batch]
                    await beta.call("ack_turn")
            # Everything acknowledged arrived once, in order; nothing refused did.
            assert got == acknowledged, disk.how
            assert (await hive.host("agent_status"))["ok"] is True


async def test_a_read_only_database_is_a_clear_error_and_the_daemon_recovers(hive: InProcessHive) -> None:
    # Root ignores file modes, and a read-only remount is refused while sqlite holds its files open for
    # writing, so sqlite's own switch makes the database read-only under the running daemon.
    writer = hive.coordinator._db._writer
    async with hive.open_agent("alpha") as alpha, hive.open_agent("beta") as beta:
        await alpha.call("send", to="beta", body="committed")
        writer.pragma("query_only", True)
        with pytest.raises(ToolError, match=r"^could not commit to hive.db: the database is read-only; nothing"):
            await alpha.call("send", to="beta", body="refused")
        with pytest.raises(ToolError, match="read-only"):
            await beta.call("recv")
        with pytest.raises(ToolError, match="read-only"):
            await alpha.call("ask", question="anyone?")
        with pytest.raises(HostRefused, match="read-only"):
            await hive.host("set_paused", name="alpha", paused=True)
        assert (await beta.call("status"))["pending_messages"] == 1  # reads still answer
        writer.pragma("query_only", False)
        await alpha.call("send", to="beta", body="after")
        assert [m["body"] for m in (await beta.call("recv", max=32))["messages"]] == ["committed", "after"]


async def test_an_answer_and_its_notice_commit_together_or_not_at_all(
    hive: InProcessHive, monkeypatch: pytest.MonkeyPatch
) -> None:
    coordinator = hive.coordinator
    q = await coordinator.ask("alpha", "ship it?")
    real_notice = hive_trio.store.broker.notice_tx

    def failing_notice(conn: apsw.Connection, **kwargs: Any) -> Any:
        real_notice(conn, **kwargs)
        raise apsw.IOError("disk I/O error")  # the disk fails after the answer's UPDATE, inside one transaction

    monkeypatch.setattr(hive_trio.store.broker, "notice_tx", failing_notice)
    with pytest.raises(StorageError, match="nothing was changed"):
        await coordinator.answer_question(q.id, "yes", answerer="operator")
    assert (await coordinator.get_question(q.id)).answer is None  # not answered without its notice
    assert await coordinator.inbox_depth("alpha") == 0
    monkeypatch.setattr(hive_trio.store.broker, "notice_tx", real_notice)
    await coordinator.answer_question(q.id, "yes", answerer="operator")
    (notice,) = await coordinator.recent_messages("alpha")
    assert json.loads(notice.body)["answer"] == "yes"


# ------------------------------------------------------------------------------ a client that never reads


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def push_until_stalled(stream: trio.SocketStream, line: bytes, *, limit: int) -> int:
    """Write `line` over and over until the daemon stops reading (a write stalls for a second)."""
    sent = 0
    chunk = line * 100
    while sent < limit:
        with trio.move_on_after(1.0) as stalled:
            await stream.send_all(chunk)
            sent += 100
        if stalled.cancelled_caught:
            return sent
    return sent


@pytest.fixture
async def daemon() -> AsyncIterator[DaemonProcess]:
    with short_temp_dir("hd-") as directory:
        # Agents are idle processes (the lifecycle's process backend); the tests speak on their sockets.
        args = ("--log-level", "warning", "--agent-command", "exec sleep infinity")
        async with open_daemon_process(directory, *args) as process:
            for name in ("alpha", "beta"):
                await host_request(process.host_socket, "spawn", name=name)
            yield process


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_client_that_never_reads_its_replies_costs_bounded_memory(daemon: DaemonProcess) -> None:
    pid = daemon.process.pid
    alpha_socket = daemon.runtime_dir / "agents" / "alpha" / "mcp.sock"
    async with open_agent_client(alpha_socket) as alpha:
        for i in range(50):
            await alpha.call("send", to="alpha", body=f"{i}" + "r" * 2000)  # so each `recent` reply is ~100 KB
    before = rss_mib(pid)
    mcp = await trio.open_unix_socket(str(alpha_socket))
    await raw_handshake(mcp)
    mcp_sent = await push_until_stalled(mcp, request(7, "recent", limit=50), limit=200_000)
    host = await trio.open_unix_socket(str(daemon.host_socket))
    host_sent = await push_until_stalled(host, b'{"cmd":"agent_status"}\n', limit=200_000)
    grown = rss_mib(pid) - before
    # The daemon stopped reading both: a few thousand requests sit in kernel buffers, and at most
    # MAX_IN_FLIGHT replies in the daemon. (Before the bound, the same flood took 280 MB and kept going.)
    assert mcp_sent < 20_000 and host_sent < 20_000
    assert grown < 40, f"daemon RSS grew {grown:.0f} MiB"
    with trio.fail_after(5):  # everyone else is served meanwhile
        async with open_agent_client(alpha_socket) as other:
            assert (await other.call("whoami"))["name"] == "alpha"
        assert (await host_request(daemon.host_socket, "list"))["agents"] == ["alpha", "beta"]
    await mcp.aclose()
    await host.aclose()
    print(
        f"\nnever-reading clients: MCP {mcp_sent} requests, host.sock {host_sent} before the daemon"
        f" stopped reading; RSS +{grown:.1f} MiB"
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_ten_thousand_connections_opened_and_dropped_leak_nothing(daemon: DaemonProcess) -> None:
    pid = daemon.process.pid
    alpha_socket = str(daemon.runtime_dir / "agents" / "alpha" / "mcp.sock")
    host_socket = str(daemon.host_socket)
    async with open_agent_client(alpha_socket) as alpha:  # warm up: the fds a first call opens stay open
        await alpha.call("status")
    baseline_fds = open_fds(pid)
    hello = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": HELLO}).encode() + b"\n"

    async def one(i: int) -> None:
        path = host_socket if i % 5 == 4 else alpha_socket
        stream = await trio.open_unix_socket(path)
        try:
            match i % 4:
                case 1:  # half a request, then gone
                    await stream.send_all(b'{"jsonrpc":"2.0","id":1,"meth')
                case 2:  # a whole request, gone before its reply
                    await stream.send_all(hello if path == alpha_socket else b'{"cmd":"list"}\n')
                case 3:  # a whole exchange, then an abrupt close
                    await stream.send_all(hello if path == alpha_socket else b'{"cmd":"list"}\n')
                    await stream.receive_some()
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()

    limiter = trio.CapacityLimiter(32)

    async def limited(i: int) -> None:
        async with limiter:
            await one(i)

    async with trio.open_nursery() as nursery:
        for i in range(10_000):
            nursery.start_soon(limited, i)
    await eventually(lambda: open_fds(pid) <= baseline_fds, within=20)  # every connection's fd was closed
    async with open_agent_client(alpha_socket) as alpha:
        assert (await alpha.call("status"))["name"] == "alpha"
    assert (await host_request(daemon.host_socket, "agent_status"))["ok"] is True
    assert daemon.process.returncode is None


# ------------------------------------------------------------------------------ a subscriber lost mid-send


async def test_a_status_subscriber_lost_mid_send_is_dropped_and_the_others_carry_on(
    hive: InProcessHive, caplog: pytest.LogCaptureFixture
) -> None:
    hub = hive.coordinator._hub
    async with hive.open_agent("alpha") as alpha:
        await alpha.call("set_status", text="s" * 500_000)  # each row is bigger than the socket buffers
    async with hive.open_host() as steady:
        await steady.request("subscribe_agent_status")
        doomed = await trio.open_unix_socket(str(hive.host_socket))
        await doomed.send_all(b'{"cmd":"subscribe_agent_status"}\n')
        assert await doomed.receive_some(100)  # its ack
        await eventually(lambda: hub.subscriber_count == 2)
        await hive.host("set_paused", name="alpha", paused=True)  # a fat row is being written to both
        await doomed.receive_some(1000)  # part of it arrived; the subscriber is gone mid-row
        await doomed.aclose()
        await eventually(lambda: hub.subscriber_count == 1)  # the lost one is forgotten
        with trio.fail_after(10):
            while True:  # the steady subscriber still sees every change
                (row,) = (await steady.read_response())["agent_statuses"]
                if row["name"] == "alpha" and row["paused"]:
                    break
        with hive.coordinator.transient("beta", TransientKind.RESTARTING):
            with trio.fail_after(10):
                while True:
                    (row,) = (await steady.read_response())["agent_statuses"]
                    if row["transient"] == "restarting":
                        break
    assert [r.getMessage() for r in caplog.records if r.levelno >= 40] == []


async def test_an_event_hub_subscriber_closed_during_fan_out_is_forgotten() -> None:
    from hive_trio.core.event_hub import EventHub
    from hive_trio.records import TransientClearedEvent

    hub = EventHub(buffer=8)
    with hub.subscribe() as gone, hub.subscribe() as staying:
        hub.emit(TransientClearedEvent(name="a"))
        await gone.receive.aclose()  # its reader died between two events
        for name in "bcd":
            hub.emit(TransientClearedEvent(name=name))
        assert hub.subscriber_count == 1
        assert [getattr(await staying.__anext__(), "name", None) for _ in range(4)] == ["a", "b", "c", "d"]


async def test_an_approval_its_notice_and_its_deploy_record_commit_together(
    hive: InProcessHive, monkeypatch: pytest.MonkeyPatch
) -> None:
    coordinator = hive.coordinator
    approval = await coordinator.propose_approval("alpha", ApprovalKind.APPLY_COMMIT, commit_ref="abcdef1")
    real_notice = hive_trio.store.broker.notice_tx

    def failing_notice(conn: apsw.Connection, **kwargs: Any) -> Any:
        real_notice(conn, **kwargs)
        raise apsw.IOError("disk I/O error")

    monkeypatch.setattr(hive_trio.store.broker, "notice_tx", failing_notice)
    with pytest.raises(StorageError):
        await coordinator.resolve_approval(
            approval.id, ApprovalStatus.APPROVED, roster_update={"deployed_sha": "f" * 40}
        )
    assert (await coordinator.get_approval(approval.id)).status is ApprovalStatus.PENDING
    assert (await coordinator.require_agent("alpha")).deployed_sha is None
    assert await coordinator.inbox_depth("manager") == 0
    monkeypatch.setattr(hive_trio.store.broker, "notice_tx", real_notice)
    await coordinator.resolve_approval(approval.id, ApprovalStatus.APPROVED, roster_update={"deployed_sha": "f" * 40})
    assert (await coordinator.require_agent("alpha")).deployed_sha == "f" * 40
    (notice,) = await coordinator.recent_messages("manager")
    assert json.loads(notice.body)["status"] == "approved"


async def test_a_deploy_cut_off_after_its_git_steps_is_finished_at_the_next_start(short_tmp: Path) -> None:
    # What the daemon's SIGKILL leaves between `_deploy`'s git steps and its record, made by hand; the
    # crash test (test_crash.py) meets it by chance, this one every time.
    config = lifecycle_config(short_tmp, agent_command="exec sleep infinity")
    async with open_hive(config) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("alpha")
        sha = await commit_file(coord.paths.agent_config("alpha"), "agent.toml", '[env]\nA = "1"\n', "a")
        approval = await coord.ops.request_apply_commit("alpha", sha, "x", requested_by="manager")
        applied = coord.paths.agent_applied("alpha")
        await config_repos.fast_forward(applied, sha)
        await config_repos.tag(applied, f"deployed/{approval.id}", sha)
    async with open_hive(config) as hive:  # its reconcile finishes the approval
        coord = hive.coordinator
        assert (await coord.get_approval(approval.id)).status is ApprovalStatus.APPROVED
        assert (await coord.require_agent("alpha")).deployed_sha == sha
        (event,) = [e for e in await helper_events(coord, "manager") if e["event"] == "approval_resolved"]
        assert (event["id"], event["status"], event["tag"]) == (approval.id, "approved", f"deployed/{approval.id}")
        assert isinstance(coord.ops, Lifecycle)
        assert await coord.ops.finish_interrupted_deploys() == []


# ------------------------------------------------------------------------------ an agent that floods stdout


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_agents_flooding_stdout_cost_bounded_disk_and_memory_and_the_daemon_answers() -> None:
    log_limit = 1024 * 1024
    with short_temp_dir("hl-") as directory:
        args = ("--log-level", "warning", "--agent-command", "exec yes 'all work and no play'")
        env = {"HIVE_TRIO_AGENT_LOG_MAX_BYTES": str(log_limit)}
        async with open_daemon_process(directory, *args, env=env) as daemon:
            pid = daemon.process.pid
            for name in ("loud", "louder"):
                await host_request(daemon.host_socket, "spawn", name=name)
            before = rss_mib(pid)
            slowest = 0.0
            for _ in range(30):  # ~3 s of two agents writing as fast as the pipe lets them
                start = trio.current_time()
                rows = (await host_request(daemon.host_socket, "agent_status"))["agent_statuses"]
                async with open_agent_client(daemon.runtime_dir / "agents" / "loud" / "mcp.sock") as loud:
                    assert (await loud.call("status"))["name"] == "loud"
                slowest = max(slowest, trio.current_time() - start)
                assert all(r["running"] for r in rows), rows
                await trio.sleep(0.1)
            grown = rss_mib(pid) - before
            logs = {p.name: p.stat().st_size for p in (directory / "state" / "logs").iterdir()}
            assert any(name.endswith(".log.1") for name in logs), "the flood never rotated a log"
            for name in ("loud", "louder"):
                # (Listed mid-rotation, `<name>.log` may be between its rename and its fresh file.)
                assert logs.get(f"{name}.log", 0) + logs.get(f"{name}.log.1", 0) <= 2 * log_limit, logs
            assert grown < 20, f"daemon RSS grew {grown:.1f} MiB"
            assert slowest < 1.0, f"a status round trip took {slowest:.2f} s during the flood"
    print(
        f"\nflooding agents: logs {logs}; daemon RSS +{grown:.1f} MiB;"
        f" slowest status round trip {slowest * 1000:.0f} ms"
    )
