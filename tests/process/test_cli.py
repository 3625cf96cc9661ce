"""The `hive-trio` command line and the daemon as a real child process (`python -m hive_trio daemon`),
driven the way operators and agents drive it: CLI commands, host.sock, and MCP through the stdio bridge
(the official SDK's `stdio_client`) and over the raw socket."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from hive_trio.cli import build_parser, discovered_hive, embedded_runtime_dir, format_table, main
from hive_trio.clients.mcp import open_agent_client, tool_result_json
from hive_trio.rules.config import Config
from hive_trio.testing import DaemonProcess, InProcessHive, open_daemon_process, short_temp_dir

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def daemon_dir() -> Iterator[Path]:
    with short_temp_dir("htd-") as path:
        yield path


def out(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode()


def err(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode()


def one_line_error(result: subprocess.CompletedProcess[bytes], code: int, reason: str) -> None:
    assert result.returncode == code, (result.returncode, out(result), err(result))
    lines = err(result).splitlines()
    assert len(lines) == 1 and lines[0].startswith("hive-trio: ") and reason in lines[0], lines


async def bridge_session(socket_path: Path) -> Any:
    """The SDK's stdio client, with `hive-trio mcp-bridge` as its server process."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "hive_trio", "mcp-bridge", str(socket_path)])
    return stdio_client(params)


async def call(session: ClientSession, tool: str, **args: Any) -> Any:
    return tool_result_json(await session.call_tool(tool, args))


@pytest.mark.slow
async def test_operator_commands_and_agents_against_a_daemon_process(daemon_dir: Path) -> None:
    # The daemon supervises real agent processes; these idle, so the test's own clients speak for them.
    async with open_daemon_process(daemon_dir, "--agent-command", "exec sleep 3600") as daemon:
        result = await daemon.run_cli("status")
        assert (result.returncode, out(result)) == (0, "no agents\n")
        for name in ("alpha", "beta"):
            result = await daemon.run_cli("spawn", name)
            assert (result.returncode, out(result)) == (0, f"spawned {name}\n"), err(result)
        result = await daemon.run_cli("send", "alpha", "from the operator")
        # Spawning already put a "you were started" note from `system` in each inbox.
        assert result.returncode == 0 and re.fullmatch(r"sent #\d+ to alpha\n", out(result)), out(result)
        status = out(await daemon.run_cli("status"))
        assert status.splitlines()[0].split() == ["NAME", "STATE", "PENDING", "STATUS"]
        assert [line.split()[:3] for line in status.splitlines()[1:]] == [
            ["alpha", "running", "2"],
            ["beta", "running", "1"],
        ]
        as_json = json.loads(out(await daemon.run_cli("status", "--json")))
        assert (as_json["version"], as_json["ok"]) == (1, True)
        assert [r["name"] for r in as_json["agent_statuses"]] == ["alpha", "beta"]

        one_line_error(await daemon.run_cli("spawn", "../x"), 1, "agent name '../x' is not allowed")
        one_line_error(await daemon.run_cli("spawn", "alpha"), 1, "agent 'alpha' already exists")
        result = await daemon.run_cli("restart", "alpha")
        assert (result.returncode, out(result)) == (0, "restarted alpha\n"), err(result)
        one_line_error(await daemon.run_cli("send", "gamma", "hello"), 1, "unknown agent 'gamma'")
        assert out(await daemon.run_cli("approvals")) == "no approvals\n"

        # Two agents: alpha over the stdio bridge (the SDK's stdio_client), beta over the raw socket.
        alpha_socket = daemon.runtime_dir / "agents" / "alpha" / "mcp.sock"
        beta_socket = daemon.runtime_dir / "agents" / "beta" / "mcp.sock"
        async with (
            await bridge_session(alpha_socket) as (read, write),
            ClientSession(read, write) as alpha,
            open_agent_client(beta_socket) as beta,
        ):
            await alpha.initialize()
            received = (await call(alpha, "recv", max=32))["messages"]
            assert [m["body"] for m in received if m["from"] != "system"] == ["from the operator"]
            await call(alpha, "send", to="beta", body="over the bridge")
            got = (await beta.call("recv", wait_seconds=10, max=32))["messages"]
            assert [(m["from"], m["body"]) for m in got if m["from"] != "system"] == [("alpha", "over the bridge")]
            await beta.call("send", to="alpha", body="and back")
            assert [m["body"] for m in (await call(alpha, "recv", wait_seconds=10))["messages"]] == ["and back"]
            asked = await call(alpha, "ask", question="ship it?", options=["yes", "no"])

        questions = out(await daemon.run_cli("questions"))
        assert "ship it?" in questions and "yes | no" in questions
        result = await daemon.run_cli("answer", str(asked["question_id"]), "yes")
        assert (result.returncode, out(result)) == (0, f"answered question #{asked['question_id']}\n")
        assert out(await daemon.run_cli("questions")) == "no open questions\n"
        assert "broadcast to 2 agents" in out(await daemon.run_cli("broadcast", "all hands"))
        assert out(await daemon.run_cli("destroy", "beta")) == "destroyed beta\n"
        assert out(await daemon.run_cli("tombstones")) == "beta\n"
        process = daemon.process
    assert process.returncode == 0  # SIGTERM: graceful
    assert "received SIGTERM, shutting down" in "\n".join(daemon.stderr_lines)
    assert sorted(p.name for p in (daemon_dir / "run").rglob("*.sock")) == []


@pytest.mark.slow
async def test_sigint_is_graceful_and_a_restart_serves_the_roster_again(daemon_dir: Path) -> None:
    async with open_daemon_process(daemon_dir) as daemon:
        assert (await daemon.run_cli("spawn", "alpha")).returncode == 0
        daemon.process.send_signal(signal.SIGINT)
        await daemon.process.wait()
        assert daemon.process.returncode == 0
        assert not daemon.host_socket.exists()
    # A second daemon on the same state: the roster's sockets come back, the message waits.
    async with open_daemon_process(daemon_dir) as daemon:
        async with open_agent_client(daemon.runtime_dir / "agents" / "alpha" / "mcp.sock") as alpha:
            assert (await alpha.call("whoami"))["name"] == "alpha"
        manager_socket = daemon.runtime_dir / "manager" / "mcp.sock"
        async with open_agent_client(manager_socket) as manager:
            assert (await manager.call("whoami"))["role"] == "manager"


async def test_a_second_daemon_on_the_same_state_refuses_in_one_line(daemon_dir: Path) -> None:
    async with open_daemon_process(daemon_dir) as daemon:
        argv = [sys.executable, "-m", "hive_trio", "daemon", "--state-dir", str(daemon.state_dir)]
        argv += ["--runtime-dir", str(daemon_dir / "run2")]
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
        one_line_error(result, 1, "already using")
        # Another state dir but this daemon's runtime dir: its live sockets are not taken over.
        argv = [sys.executable, "-m", "hive_trio", "daemon", "--state-dir", str(daemon_dir / "state2")]
        argv += ["--runtime-dir", str(daemon.runtime_dir)]
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
        one_line_error(result, 1, "another process is already serving")
        assert (await daemon.run_cli("status")).returncode == 0
        assert (daemon.runtime_dir / "manager" / "mcp.sock").exists()


async def test_not_running_and_permission_denied_are_different_messages(daemon_dir: Path) -> None:
    nowhere = daemon_dir / "nothing-here"
    nowhere.mkdir()
    result = await trio.run_process(
        [sys.executable, "-m", "hive_trio", "status", "--runtime-dir", str(nowhere)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    one_line_error(result, 3, "daemon is not running")
    result = await trio.run_process(
        [sys.executable, "-m", "hive_trio", "mcp-bridge", str(nowhere / "mcp.sock")],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    one_line_error(result, 3, "daemon is not running")
    async with open_daemon_process(daemon_dir) as daemon:
        result = await run_cli_as_someone_else(daemon, "status")
        one_line_error(result, 4, "permission denied")


async def run_cli_as_someone_else(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run a CLI command as a user with no right to the socket (root: as nobody; else: socket chmod 0)."""
    argv = daemon.cli_command(*args)
    if os.geteuid() == 0:
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    else:
        daemon.host_socket.chmod(0)
    return await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)


# ------------------------------------------------------------------------------- in-process bits


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["approve", "soon"])
    assert exited.value.code == 2
    assert "expected a positive id" in capsys.readouterr().err


def test_every_command_is_declared() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(commands) == {
        "daemon", "up", "watch", "dashboard-url", "mcp-bridge", "status", "spawn", "start", "stop", "restart",
        "rebuild", "destroy", "approvals", "approve", "deny", "questions", "answer", "send", "broadcast",
        "tombstones", "inbox", "reply", "logs", "install-unit", "backup", "agent", "permissions", "allow",
        "deny-permission", "interrupt", "transcript", "set-budget", "reminders",
    }  # fmt: skip


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attributes: Any) -> None:
    module = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def test_up_calls_its_module_with_the_embedded_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # `watch` and `dashboard-url` ask the running daemon now: tests/process/test_cli_operator.py.
    seen: dict[str, Any] = {}

    async def run_up(config: Config, runtime: str) -> None:
        seen["up"], seen["runtime"] = config, runtime

    fake_module(monkeypatch, "hive_trio.examples.up", run_up=run_up, claude_runtime_missing=lambda: None)
    monkeypatch.chdir(tmp_path)
    assert main(["up"]) == 0
    assert seen["up"].state_dir == tmp_path.resolve() / "hive-state"
    assert seen["up"].runtime_dir == embedded_runtime_dir(tmp_path.resolve() / "hive-state")
    assert seen["runtime"] == "examples"
    assert main(["up", "--runtime", "claude"]) == 0
    assert seen["runtime"] == "claude"


def test_embedded_runtime_dir_keeps_socket_paths_short() -> None:
    assert embedded_runtime_dir(Path("/srv/hive-state")) == Path("/srv/hive-state/run")
    deep = Path("/home/someone/" + "very-long-directory-name/" * 4 + "hive-state")
    chosen = embedded_runtime_dir(deep)
    assert chosen != deep / "run" and chosen == embedded_runtime_dir(deep)  # stable across runs
    assert len(str(chosen / "agents" / ("a" * 31) / "mcp.sock")) < 108


def test_tables_are_aligned_and_cells_bounded() -> None:
    table = format_table(["ID", "TEXT"], [[1, "short"], [22, "x" * 100], [3, None]])
    lines = table.splitlines()
    assert lines[0] == "ID  TEXT"
    assert lines[1] == "1   short"
    assert lines[2].startswith("22  xxx") and lines[2].endswith("…") and len(lines[2]) == 4 + 60
    assert lines[3] == "3   -"


async def read_json_line(stream: trio.abc.ReceiveStream, buffer: bytearray) -> dict[str, Any]:
    while b"\n" not in buffer:
        data = await stream.receive_some()
        if not data:
            raise EOFError
        buffer += data
    end = buffer.index(b"\n")
    line = bytes(buffer[:end])
    del buffer[: end + 1]
    result: dict[str, Any] = json.loads(line)
    return result


async def test_the_bridge_copies_bytes_both_ways_and_ends_with_stdin(hive: InProcessHive) -> None:
    await hive.add_agent("alpha")
    argv = [sys.executable, "-m", "hive_trio", "mcp-bridge", str(hive.socket_path("alpha"))]
    process = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    buffer = bytearray()
    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}},
    ]
    await process.stdin.send_all(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    assert (await read_json_line(process.stdout, buffer))["id"] == 1
    reply = await read_json_line(process.stdout, buffer)
    assert json.loads(reply["result"]["content"][0]["text"]) == {"name": "alpha", "role": "agent"}
    await process.stdin.aclose()  # the client is done: the bridge half-closes and exits cleanly
    with trio.fail_after(10):
        assert await process.wait() == 0


async def test_the_bridge_says_so_when_the_daemon_hangs_up(hive: InProcessHive) -> None:
    await hive.add_agent("alpha")
    socket = str(hive.socket_path("alpha"))
    argv = [sys.executable, "-m", "hive_trio", "mcp-bridge", socket, "--reconnect-for", "0.5"]
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    buffer = bytearray()
    await process.stdin.send_all(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
    assert (await read_json_line(process.stdout, buffer))["id"] == 1  # connected and served
    hive.coordinator.unregister_agent("alpha")
    with trio.fail_after(10):
        assert await process.wait() == 1
    assert (await process.stderr.receive_some()).decode().strip().startswith("hive-trio: the daemon closed")
    await process.stdin.aclose()


def test_daemon_flags_become_the_config(tmp_path: Path) -> None:
    from hive_trio.cli import load_cli_config

    args = build_parser().parse_args(
        ["daemon", "--state-dir", str(tmp_path / "s"), "--runtime-dir", str(tmp_path / "r"),
         "--dashboard", "[::1]:8080", "--agent-command", "exec my-agent {name} {socket}"]
    )  # fmt: skip
    config = load_cli_config(args)
    assert (config.state_dir, config.runtime_dir) == (tmp_path / "s", tmp_path / "r")
    assert (config.dashboard_host, config.dashboard_port) == ("::1", 8080)
    assert config.agent_command == "exec my-agent {name} {socket}"
    toml = tmp_path / "hive.toml"
    toml.write_text("dashboard_port = 9000\nmax_body_bytes = 1024\n")
    args = build_parser().parse_args(["daemon", "--config", str(toml), "--state-dir", str(tmp_path / "s")])
    config = load_cli_config(args)
    assert (config.dashboard_port, config.max_body_bytes) == (9000, 1024)
    bad = build_parser().parse_args(["daemon", "--dashboard", "no-port-here"])
    with pytest.raises(Exception, match="--dashboard wants HOST:PORT"):
        load_cli_config(bad)


def test_up_hive_in_the_current_directory_is_found_without_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HIVE_TRIO_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("HIVE_TRIO_STATE_DIR", raising=False)
    parse = build_parser().parse_args
    assert discovered_hive(parse(["status"])) == {}  # nothing here yet
    state = (tmp_path / "hive-state").resolve()
    runtime = embedded_runtime_dir(state)
    runtime.mkdir(parents=True)
    (runtime / "host.sock").touch()
    assert discovered_hive(parse(["status"])) == {"state_dir": state, "runtime_dir": runtime}
    # Anything that names a hive wins.
    assert discovered_hive(parse(["status", "--runtime-dir", "/elsewhere"])) == {}
    monkeypatch.setenv("HIVE_TRIO_RUNTIME_DIR", "/elsewhere")
    assert discovered_hive(parse(["status"])) == {}


NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
async def test_a_runtime_dir_owned_by_another_user_is_refused_in_one_line(daemon_dir: Path) -> None:
    """Its owner could swap host.sock for their own listener and read the operator's `approve` (issue 13)."""
    runtime = daemon_dir / "run"
    runtime.mkdir(mode=0o755)
    os.chown(runtime, NOBODY, NOBODY)
    argv = [sys.executable, "-m", "hive_trio", "daemon", "--state-dir", str(daemon_dir / "state")]
    argv += ["--runtime-dir", str(runtime)]
    result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    one_line_error(result, 1, f"refusing runtime dir {runtime}: it is owned by uid {NOBODY}")
    assert "--runtime-dir" in err(result)
    assert os.listdir(runtime) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
async def test_up_refuses_a_squatted_tmp_runtime_dir_in_one_line(daemon_dir: Path) -> None:
    """`up`'s fallback under /tmp has a guessable name: a stranger who made it first gets no takeover."""
    state = daemon_dir / ("deep-directory-name/" * 5) / "hive-state"
    squat = embedded_runtime_dir(state)
    assert squat.parent == Path(tempfile.gettempdir())
    squat.mkdir(mode=0o777)
    try:
        os.chown(squat, NOBODY, NOBODY)
        argv = [sys.executable, "-m", "hive_trio", "up", "--state-dir", str(state), "--dashboard", "127.0.0.1:0"]
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
        assert result.returncode == 1, err(result)
        assert "Traceback" not in err(result)
        assert f"refusing runtime dir {squat}: it is owned by uid {NOBODY}" in err(result)
        assert os.listdir(squat) == []
    finally:
        squat.rmdir()


async def test_a_zero_length_hive_db_beside_kept_agents_refuses_to_start_until_restored_or_fresh(
    daemon_dir: Path,
) -> None:
    """A truncated hive.db once started a new, empty hive and made every agent a tombstone (issue 13)."""
    async with open_daemon_process(daemon_dir) as daemon:
        assert (await daemon.run_cli("spawn", "alpha")).returncode == 0
    db = daemon_dir / "state" / "hive.db"
    backup = daemon_dir / "hive.db.good"
    backup.write_bytes(db.read_bytes())
    db.write_bytes(b"")
    argv = [sys.executable, "-m", "hive_trio", "daemon", "--state-dir", str(daemon_dir / "state")]
    argv += ["--runtime-dir", str(daemon_dir / "run")]
    result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    one_line_error(result, 1, f"{db} is empty (0 bytes), but the state dir still holds 1 agent(s) (alpha)")
    assert "--fresh" in err(result) and "hive-trio backup" in err(result)
    assert db.stat().st_size == 0  # nothing was written over it
    # The documented restore: put the backup back, and the hive is whole again.
    db.write_bytes(backup.read_bytes())
    async with open_daemon_process(daemon_dir) as daemon:
        status = await daemon.run_cli("status", "--json")
        assert [row["name"] for row in json.loads(out(status))["agent_statuses"]] == ["alpha"]
    # Or, asked for explicitly, an empty hive over the kept state: alpha is a tombstone.
    db.write_bytes(b"")
    async with open_daemon_process(daemon_dir, "--fresh") as daemon:
        tombstones = await daemon.run_cli("tombstones")
        assert out(tombstones).split() == ["alpha"]
