"""`hive-trio watch`: what the operator reads, and the live loop against a real dashboard."""

from __future__ import annotations

import io
import socket
from functools import partial

import pytest
import trio
from dashboard_support import add_pending_approval, running_hive, url_of

from hive_trio.clients.dashboard import DashboardRefused, DashboardUnavailable
from hive_trio.clients.live_state import LiveState
from hive_trio.clients.watch import ansi, render_event, render_snapshot, run_watch
from hive_trio.records import (
    OPERATOR,
    AgentStatus,
    ApprovalKind,
    ApprovalResolvedEvent,
    ApprovalStatus,
    QuestionAddedEvent,
    SentEvent,
    TransientKind,
    TransientSetEvent,
)
from hive_trio.rules.config import Config


def test_event_lines_read_like_sentences() -> None:
    sent = SentEvent(sender="alpha", recipient="beta", body="line one\nline two", at=0.0, seq=1)
    line = render_event(sent)
    assert line is not None and line.endswith("alpha → beta: line one line two")
    resolved = ApprovalResolvedEvent(
        id=4,
        agent="alpha",
        approval_kind=ApprovalKind.APPLY_COMMIT,
        sha_short="abc",
        status=ApprovalStatus.DENIED,
        resolved_at=0.0,
        note="not now",
        description=None,
        seq=2,
    )
    assert render_event(resolved) == "approval #4 for alpha denied (not now)"
    asked = QuestionAddedEvent(
        id=2, asker="beta", question="Ship?", options=["y", "n"], multi=False, asked_at=0.0, deadline_at=100.0, seq=3
    )
    assert render_event(asked, now=40.0) == "question #2 from beta: Ship? [y / n] (answer within 60s)"
    spin = TransientSetEvent(name="alpha", transient_kind=TransientKind.REBUILDING, since_unix=0.0, seq=4)
    assert render_event(spin) == "alpha: rebuilding…"
    assert render_event(spin, ansi) == "\x1b[34malpha: rebuilding…\x1b[0m"


def test_a_body_can_never_drive_the_terminal() -> None:
    hostile = SentEvent(sender="alpha", recipient="beta", body="\x1b[2J\x1b]0;pwned\x07" + "x" * 500, at=0.0, seq=1)
    line = render_event(hostile)
    assert line is not None
    assert "\x1b" not in line and "\x07" not in line
    assert line.endswith("…") and len(line) < 200


def test_snapshot_summary() -> None:
    state = LiveState()
    state.agents = {
        "alpha": AgentStatus(
            name="alpha",
            running=True,
            failed=False,
            needs_update=False,
            needs_login=False,
            paused=False,
            parent=None,
            deployed_sha=None,
            active_model=None,
            status_text="refactoring",
            status_set_at=None,
            url=None,
            pending_messages=2,
        )
    }
    lines = render_snapshot(state)
    assert lines[0] == "hive (seq 0) — 1 agent(s)"
    assert lines[1].split() == ["alpha", "running", "[2", "waiting]", "refactoring"]


class Screen(io.StringIO):
    """What the terminal shows; a test can wait for a line to appear."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = trio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        self.changed.set()
        self.changed = trio.Event()
        return written

    async def shows(self, text: str) -> None:
        while text not in self.getvalue():
            await self.changed.wait()


async def test_watch_prints_the_hive_live_and_rides_out_a_restart(config: Config) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = Screen()
    async with trio.open_nursery() as nursery:
        async with running_hive(config, dashboard_port=port) as hive:
            coord = hive.coordinator
            await coord.record_spawn("alpha")
            await add_pending_approval(coord, "alpha")
            nursery.start_soon(partial(run_watch, url_of(hive), out=out))
            with trio.fail_after(10):
                await out.shows("approval #1 pending")
                await coord.send("alpha", OPERATOR, "done with the refactor")
                await out.shows("alpha → operator: done with the refactor")
        with trio.fail_after(10):
            await out.shows("(connection lost; reconnecting…)")
        async with running_hive(config, dashboard_port=port) as again:
            with trio.fail_after(10):
                # Another daemon run (another epoch): a fresh summary, then live lines again.
                await out.shows("hive (seq 0)")
                await again.coordinator.send("alpha", OPERATOR, "back again")
                await out.shows("alpha → operator: back again")
        nursery.cancel_scope.cancel()
    text = out.getvalue()
    assert "\x1b[" not in text  # not a terminal: no colour codes
    assert "alpha" in text.splitlines()[1]


async def test_watch_refuses_a_wrong_token_plainly(config: Config) -> None:
    async with running_hive(config) as hive:
        with pytest.raises(DashboardRefused, match="401"):
            await run_watch(url_of(hive).replace("token=", "token=wrong"), out=io.StringIO())


async def test_watch_without_a_daemon_fails_plainly_or_waits_when_asked() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/?token=secret-value"
    with pytest.raises(DashboardUnavailable, match=f"no dashboard at http://127.0.0.1:{port}/: ") as caught:
        await run_watch(url, out=io.StringIO())
    assert "secret-value" not in str(caught.value)
    out = Screen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(run_watch, url, out=out, wait=True))
        with trio.fail_after(10):
            await out.shows("(waiting for the dashboard to come back…)")
        nursery.cancel_scope.cancel()
    assert "secret-value" not in out.getvalue()
    assert out.getvalue().count("waiting for the dashboard") == 1


def test_cli_dashboard_url_without_a_daemon_is_one_line(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    from hive_trio.cli import main

    # It asks the running daemon (issue 11), so with none there is nothing to guess from files.
    code = main(["dashboard-url", "--state-dir", str(config.state_dir), "--runtime-dir", str(config.runtime_dir)])
    assert code == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("hive-trio: daemon is not running") and "\n" not in err
