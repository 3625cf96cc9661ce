"""Real Claude Code agents (the CLI bundled in claude-agent-sdk) run by the harness in a real hive, offline.

Each test spawns an agent whose command is `python -m hive_trio agent --runtime claude`; its Claude Code
talks to the scripted Messages API server (`hive_trio.testing.scripted_model`) through ANTHROPIC_BASE_URL
and to the hive through `mcp-bridge`. The harness, the CLI and the bridge are real child processes.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio

from hive_trio.agent import scripted_model as sm
from hive_trio.testing import InProcessHive, open_test_hive, short_temp_dir

pytest.importorskip("claude_agent_sdk", reason="the claude extra (in the test extra) provides the CLI")

TURN_TIMEOUT = 40.0


def harness_command(*extra: str) -> str:
    return shlex.join([sys.executable, "-m", "hive_trio", "agent", "--runtime", "claude", *extra])


@pytest.fixture
def root() -> Iterator[Path]:
    with short_temp_dir("hive-cc-") as path:
        yield path


@pytest.fixture
async def model(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[sm.ScriptedModel]:
    async with sm.open_scripted_model() as scripted:
        # The process backend hands the daemon's environment to its agents: this is how an operator points
        # the hive at a model endpoint, and how the CLI is kept offline.
        monkeypatch.setenv("ANTHROPIC_BASE_URL", scripted.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-scripted")
        monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        yield scripted


def open_hive(root: Path, *extra: str) -> AsyncIterator[InProcessHive]:
    return open_test_hive(  # type: ignore[no-any-return]
        directory=root, lifecycle=True, agent_command=harness_command("--retry-delay", "0.2", *extra), stop_grace=10.0
    )


async def eventually(check: Callable[[], object], *, what: str) -> None:
    """Poll an async check until it is truthy (real child processes: there is no event to wait on)."""
    with trio.move_on_after(TURN_TIMEOUT):
        while True:
            result = check()
            if hasattr(result, "__await__"):
                result = await result  # type: ignore[misc]
            if result:
                return
            await trio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def acked(hive: InProcessHive, mid: int) -> bool:
    rows = await hive.coordinator.recent_messages(None, limit=500)
    return any(m.id == mid and m.acked_at is not None for m in rows)


async def to_operator(hive: InProcessHive) -> list[str]:
    return [m.body for m in await hive.coordinator.recent_messages("operator", limit=50)]


def mentions(text: str) -> Callable[[sm.RecordedRequest], bool]:
    return lambda request: text in request.last_user_text()


async def test_an_operator_message_wakes_the_agent_which_replies_and_the_turn_is_acked(
    root: Path, model: sm.ScriptedModel
) -> None:
    def reply(request: sm.RecordedRequest) -> sm.Reply:
        if "hello alice" in request.last_user_text():
            return sm.tool_use("mcp__hive__send", {"to": "operator", "body": "hi operator"})
        return sm.text("Done.")

    model.default = reply
    async with open_hive(root) as hive:
        await hive.coordinator.ops.spawn("alice")
        [message] = await hive.coordinator.send("operator", "alice", "hello alice")
        await eventually(lambda: acked(hive, message.id), what="the turn to be acked")
        assert "hi operator" in await to_operator(hive)
        woken = next(r for r in model.main_requests if "hello alice" in r.last_user_text())
        prompt = woken.last_user_text()
        assert "Message" in prompt and "from operator" in prompt and "hello alice" in prompt
        # The hive tools are loaded (not deferred) and the lease tools are withheld from the model.
        assert "mcp__hive__send" in woken.tool_names
        assert "mcp__hive__ack_turn" not in woken.tool_names
        # The session id is kept in the agent's own state dir, for a resume after a restart.
        assert (hive.coordinator.paths.agent_notes("alice") / ".hive-harness" / "claude-session.json").is_file()


async def test_a_failed_turn_leaves_the_mail_which_comes_back_redelivered(root: Path, model: sm.ScriptedModel) -> None:
    def reply(request: sm.RecordedRequest) -> sm.Reply:
        # Claude Code retries a 400 itself, so refuse every request until the harness hands the mail out again.
        last = request.last_user_text()
        if "please work" in last and "did not finish" not in last:
            return sm.error(400, "scripted refusal", error_type="invalid_request_error")
        return sm.text("Done.")

    model.default = reply
    async with open_hive(root) as hive:
        await hive.coordinator.ops.spawn("alice")
        [message] = await hive.coordinator.send("operator", "alice", "please work")
        await eventually(lambda: acked(hive, message.id), what="the retried turn to be acked")
        asks = [r.last_user_text() for r in model.main_requests if "please work" in r.last_user_text()]
        assert "did not finish" not in asks[0]
        assert "did not finish" in asks[-1]  # the retry got it `redelivered`
        log = hive.coordinator.paths.agent_log("alice").read_text(errors="replace")
        assert " failed " in log and "scripted refusal" in log


async def test_an_auth_failure_is_reported_and_the_next_success_acks(root: Path, model: sm.ScriptedModel) -> None:
    logged_in = False

    def reply(request: sm.RecordedRequest) -> sm.Reply:
        return sm.text("Done.") if logged_in else sm.auth_failure()

    model.default = reply
    async with open_hive(root, "--auth-retry-delay", "0.5") as hive:
        await hive.coordinator.ops.spawn("alice")
        [message] = await hive.coordinator.send("operator", "alice", "are you there")
        log_path = hive.coordinator.paths.agent_log("alice")
        await eventually(lambda: "auth_failed" in log_path.read_text(errors="replace"), what="an auth_failed turn")
        assert not await acked(hive, message.id)
        logged_in = True
        await eventually(lambda: acked(hive, message.id), what="the turn after the login to be acked")


async def test_a_timed_out_turn_is_interrupted_and_its_mail_comes_back(root: Path, model: sm.ScriptedModel) -> None:
    hung = 0

    def reply(request: sm.RecordedRequest) -> sm.Reply:
        nonlocal hung
        if "long job" in request.last_user_text() and hung == 0:
            hung += 1
            return sm.hang(120)
        return sm.text("Done.")

    model.default = reply
    async with open_hive(root, "--turn-timeout", "2") as hive:
        await hive.coordinator.ops.spawn("alice")
        [message] = await hive.coordinator.send("operator", "alice", "long job")
        await eventually(lambda: acked(hive, message.id), what="the turn after the timeout to be acked")
        log = hive.coordinator.paths.agent_log("alice").read_text(errors="replace")
        assert " timeout " in log
        asks = [r for r in model.main_requests if "long job" in r.last_user_text()]
        assert "did not finish" in asks[-1].last_user_text()


async def test_a_daemon_restart_mid_turn_loses_no_message(root: Path, model: sm.ScriptedModel) -> None:
    restarted = False

    def reply(request: sm.RecordedRequest) -> sm.Reply:
        if "survive this" in request.last_user_text() and not restarted:
            return sm.hang(120)
        if "survive this" in request.last_user_text():
            return sm.tool_use("mcp__hive__send", {"to": "operator", "body": "made it"})
        return sm.text("Done.")

    model.default = reply
    async with open_hive(root) as hive:
        await hive.coordinator.ops.spawn("alice")
        [message] = await hive.coordinator.send("operator", "alice", "survive this")
        await model.wait_for(lambda rs: any(r.is_main and "survive this" in r.last_user_text() for r in rs))
        session_file = hive.coordinator.paths.agent_notes("alice") / ".hive-harness" / "claude-session.json"
        session = json.loads(session_file.read_text())["session_id"]
    restarted = True
    before = len(model.main_requests)
    async with open_hive(root) as hive:
        await eventually(lambda: acked(hive, message.id), what="the message to be acked after the restart")
        assert "made it" in await to_operator(hive)
        # The session was resumed, not started over: same id, and the first run's turns are in its context.
        assert json.loads(session_file.read_text())["session_id"] == session
        first_prompt = model.main_requests[0].last_user_text().split("</system-reminder>")[-1].strip()
        assert first_prompt and first_prompt in model.main_requests[before].text()


async def test_a_tool_that_needs_permission_is_denied_when_nobody_answers(root: Path, model: sm.ScriptedModel) -> None:
    def reply(request: sm.RecordedRequest) -> sm.Reply:
        last = request.last_user_text()
        if "make a file" in last:
            return sm.tool_use("Bash", {"command": "echo x > made-by-the-model", "description": "make a file"})
        return sm.text("Done.")

    model.default = reply
    # With a harness channel the request waits for the operator until its deadline (1 s here), then is
    # denied; without one it is denied at once. Either way deny is the default and the CLI is told.
    async with open_hive(root, "--permission-ttl", "1") as hive:
        await hive.coordinator.ops.spawn("alice")
        [message] = await hive.coordinator.send("operator", "alice", "make a file")
        await eventually(lambda: acked(hive, message.id), what="the turn to be acked")
        denied = [
            block
            for r in model.main_requests
            for m in r.messages
            if isinstance(m.get("content"), list)
            for block in m["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result" and block.get("is_error")
        ]
        assert denied, "the CLI never got the deny"
        assert not (hive.coordinator.paths.agent_notes("alice") / "made-by-the-model").exists()


async def test_with_tool_search_on_the_scripted_model_loads_the_hive_tool_first(
    root: Path, model: sm.ScriptedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENABLE_TOOL_SEARCH", "true")  # the operator's choice wins over the harness default

    def reply(request: sm.RecordedRequest) -> sm.Reply:
        if "hello alice" in request.last_user_text():
            return sm.tool_use("mcp__hive__send", {"to": "operator", "body": "found it"})
        return sm.text("Done.")

    model.default = reply
    async with open_hive(root) as hive:
        await hive.coordinator.ops.spawn("alice")
        [message] = await hive.coordinator.send("operator", "alice", "hello alice")
        await eventually(lambda: acked(hive, message.id), what="the turn to be acked")
        assert "found it" in await to_operator(hive)
        searched = [r for r in model.main_requests if "ToolSearch" in r.tool_names]
        assert searched and not sm.tool_is_loaded(searched[0], "mcp__hive__send")  # deferred at first
        assert any("select:mcp__hive__send" in json.dumps(r.messages) for r in searched)  # then searched for
