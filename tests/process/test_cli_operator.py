"""The operator's command line from issue 11: global options anywhere, a diff to read before approving,
the inbox and replies, agent logs, the daemon's real dashboard URL, and one-line refusals.

Most commands run in this process (`main` in a worker thread, which runs its own trio loop) against a
real in-process hive on real sockets; the refusals that only a fresh interpreter shows (a closed
stdout, `up` refusing to start) run `python -m hive_trio` as a child.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
from dashboard_support import add_pending_approval

from hive_trio.cli import main
from hive_trio.cli.views import paint_diff, use_colour
from hive_trio.examples.up import Pending, banner
from hive_trio.records import OPERATOR
from hive_trio.testing import InProcessHive, open_test_hive, short_temp_dir

pytestmark = pytest.mark.timeout(60)

LONG_DIFF = (
    '--- a/agent.toml\n+++ b/agent.toml\n@@ -1,2 +1,2 @@\n [env]\n-EXAMPLE_GREETING = "hi"\n+EXAMPLE_GREETING = "hej"\n'
)


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await trio.to_thread.run_sync(main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str, reason: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hive-trio: ") and reason in lines[0], lines


async def child(argv: Sequence[str], *, cwd: Path | None = None, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "HIVE_TRIO_ADMIN_GROUP": ""}
    env.pop("HIVE_TRIO_RUNTIME_DIR", None)
    env.pop("HIVE_TRIO_STATE_DIR", None)
    kw.setdefault("capture_stdout", "stdout" not in kw)
    return await trio.run_process(
        [sys.executable, "-m", "hive_trio", *argv],
        capture_stderr=True,
        check=False,
        cwd=cwd,
        env=env,
        **kw,
    )


async def test_global_options_go_before_the_subcommand_or_after_it(
    hive: InProcessHive, capsys: pytest.CaptureFixture[str]
) -> None:
    await hive.add_agent("alpha")
    run = str(hive.config.runtime_dir)
    before = await cli(capsys, "--runtime-dir", run, "status")
    after = await cli(capsys, "status", "--runtime-dir", run)
    assert before == after and before[0] == 0 and before[1].splitlines()[1].startswith("alpha")
    # After the subcommand wins, as with git's -C and systemctl's --user.
    code, _, err = await cli(capsys, "--runtime-dir", "/nonexistent-runtime", "status", "--runtime-dir", run)
    assert code == 0, err


async def test_approvals_show_prints_the_diff_and_names_the_next_step(
    hive: InProcessHive, capsys: pytest.CaptureFixture[str]
) -> None:
    await hive.add_agent("alpha")
    approval = await add_pending_approval(hive.coordinator, "alpha", diff=LONG_DIFF)
    run = str(hive.config.runtime_dir)
    code, out, _ = await cli(capsys, "approvals", "show", str(approval.id), "--runtime-dir", run)
    assert code == 0
    assert f"approval #{approval.id}  apply_commit  pending" in out
    assert '+EXAMPLE_GREETING = "hej"' in out and '-EXAMPLE_GREETING = "hi"' in out
    assert "\033[" not in out  # not a terminal: no colour codes
    assert f"hive-trio approve {approval.id}" in out
    code, _, err = await cli(capsys, "approvals", "show", "99", "--runtime-dir", run)
    assert code == 1
    one_line(err, "no approval #99")
    code, _, err = await cli(capsys, "approvals", "show", "--runtime-dir", run)
    assert code == 2
    one_line(err, "usage: hive-trio approvals [show ID]")


def test_a_diff_is_coloured_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    painted = paint_diff(LONG_DIFF, colour=True).splitlines()
    assert painted[4] == '\033[31m-EXAMPLE_GREETING = "hi"\033[0m'
    assert painted[5] == '\033[32m+EXAMPLE_GREETING = "hej"\033[0m'
    assert painted[2].startswith("\033[36m@@") and painted[3] == " [env]"
    assert paint_diff(LONG_DIFF, colour=False) == LONG_DIFF

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Tty()) and not use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Tty())


async def test_inbox_lists_what_agents_sent_the_operator_and_reply_answers_one(
    hive: InProcessHive, capsys: pytest.CaptureFixture[str]
) -> None:
    await hive.add_agent("alpha")
    await hive.add_agent("beta")
    coord = hive.coordinator
    [asked] = await coord.send("alpha", OPERATOR, "can I merge the flake update?")
    await coord.send("beta", "alpha", "not for the operator")
    run = str(hive.config.runtime_dir)
    code, out, _ = await cli(capsys, "inbox", "--runtime-dir", run)
    assert code == 0
    rows = out.splitlines()
    assert rows[0].split() == ["ID", "FROM", "SENT", "MESSAGE"]
    assert len(rows) == 2 and rows[1].split()[:2] == [str(asked.id), "alpha"]
    assert rows[1].endswith("can I merge the flake update?")

    code, out, _ = await cli(capsys, "reply", str(asked.id), "yes, go ahead", "--runtime-dir", run)
    assert code == 0 and re.fullmatch(rf"sent #\d+ to alpha \(reply to #{asked.id}\)\n", out), out
    got = await coord.recv("alpha", limit=32)
    assert [(m.sender, m.body) for m in got if m.sender == OPERATOR] == [(OPERATOR, "yes, go ahead")]

    [not_mine] = [m for m in await coord.recent_messages("alpha") if m.sender == "beta"]
    code, _, err = await cli(capsys, "reply", str(not_mine.id), "hm", "--runtime-dir", run)
    assert code == 1
    one_line(err, f"no message #{not_mine.id} to the operator")


async def test_logs_prints_the_tail_and_follow_prints_what_comes_next(
    hive: InProcessHive, capsys: pytest.CaptureFixture[str]
) -> None:
    await hive.add_agent("alpha")
    log = hive.coordinator.paths.agent_log("alpha")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"line {i}\n" for i in range(2000)))
    run = str(hive.config.runtime_dir)
    code, out, _ = await cli(capsys, "logs", "alpha", "--bytes", "100", "--runtime-dir", run)
    assert code == 0
    # The end of the file, from a whole line.
    assert out.endswith("line 1999\n") and out.startswith("line ") and len(out) <= 100
    code, _, err = await cli(capsys, "logs", "nosuch", "--runtime-dir", run)
    assert code == 1
    one_line(err, "unknown agent 'nosuch'")

    argv = [sys.executable, "-m", "hive_trio", "logs", "alpha", "-f", "--bytes", "20", "--runtime-dir", run]
    process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE)
    assert process.stdout is not None
    try:
        seen = b""
        with trio.fail_after(20):
            while b"line 1999\n" not in seen:
                seen += await process.stdout.receive_some()
            with log.open("a") as fh:
                fh.write("after the tail\n")
            while b"after the tail\n" not in seen:
                seen += await process.stdout.receive_some()
    finally:
        process.kill()
        await process.wait()


async def test_dashboard_url_and_watch_ask_the_daemon_for_its_real_address(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_test_hive(dashboard_enabled=True, dashboard_host="127.0.0.1", dashboard_port=0) as hive:
        real = hive.coordinator.dashboard_url
        assert real is not None and not real.endswith(":7847/")
        run = str(hive.config.runtime_dir)
        # Only the runtime dir: the state dir (and its token file) is never named.
        code, out, _ = await cli(capsys, "dashboard-url", "--runtime-dir", run)
        token = hive.coordinator.paths.dashboard_token.read_text().strip()
        assert (code, out) == (0, f"{real}?token={token}\n")

        seen: list[str] = []

        async def run_watch(url: str) -> None:
            seen.append(url)

        monkeypatch.setattr("hive_trio.clients.watch.run_watch", run_watch)
        code, _, err = await cli(capsys, "watch", "--runtime-dir", run)
        assert (code, seen) == (0, [f"{real}?token={token}"]), err

    async with open_test_hive() as hive:  # no dashboard at all: said so, in one line
        code, _, err = await cli(capsys, "dashboard-url", "--runtime-dir", str(hive.config.runtime_dir))
        assert code == 1
        one_line(err, "serves no dashboard")


async def test_after_up_stops_commands_here_say_its_hive_is_not_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HIVE_TRIO_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("HIVE_TRIO_STATE_DIR", raising=False)
    (tmp_path / "hive-state").mkdir()
    (tmp_path / "hive-state" / "hive.db").touch()  # what a stopped `up` leaves behind
    for argv in (["status"], ["questions"], ["approve", "1"], ["dashboard-url"], ["watch"], ["inbox"]):
        code, _, err = await cli(capsys, *argv)
        assert code == 3, argv
        one_line(err, "the hive in ./hive-state is not running (start it with `hive-trio up`)")
        assert "/run/hive-trio" not in err


async def test_output_into_a_closed_pipe_is_not_a_traceback(hive: InProcessHive) -> None:
    await hive.add_agent("alpha")
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has already gone
    try:
        result = await child(["status", "--json", "--runtime-dir", str(hive.config.runtime_dir)], stdout=write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == b"", result.stderr.decode()


async def test_a_second_up_on_the_same_state_refuses_in_one_line(hive: InProcessHive) -> None:
    result = await child(["up", "--state-dir", str(hive.config.state_dir), "--dashboard", "127.0.0.1:0"])
    assert result.returncode == 1, result.stderr.decode()
    one_line(result.stderr.decode(), "is already using")


async def test_up_on_a_taken_dashboard_port_says_so_and_names_the_flag() -> None:
    with short_temp_dir("htu-") as directory, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = await child(["up", "--dashboard", f"127.0.0.1:{port}"], cwd=directory)
    assert result.returncode == 1, result.stderr.decode()
    one_line(result.stderr.decode(), f"cannot serve the dashboard on 127.0.0.1:{port}: Address already in use")
    assert "--dashboard HOST:PORT" in result.stderr.decode()


def test_the_up_banner_hints_only_at_what_is_true() -> None:
    from types import SimpleNamespace

    from hive_trio.rules.config import Config

    config = Config(state_dir=Path("/srv/h"), runtime_dir=Path("/srv/h/run"))
    coord: Any = SimpleNamespace(dashboard_url=None)
    quiet = banner(coord, config, Pending())
    assert "asked you" not in quiet and "asks you" not in quiet and "proposes" not in quiet
    assert "answer ID" not in quiet and "approve ID" not in quiet
    first = banner(coord, config, Pending(will_ask=True, will_propose=True))
    assert "alice asks you something in a moment" in first and "the manager proposes a config change" in first
    waiting = banner(coord, config, Pending(questions=2, approvals=1))
    assert "2 open questions for you" in waiting and "1 approval waiting for you" in waiting
