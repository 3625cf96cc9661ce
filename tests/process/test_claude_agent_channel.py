"""Real Claude Code agents with the harness channel (issue 10's daemon side): permissions reach the
operator and both answers reach the CLI, an operator interrupt stops a long turn, a 401 sets needs_login."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from test_claude_agent import acked, eventually, model, open_hive, root, to_operator  # noqa: F401 (fixtures)

from hive_trio.agent import scripted_model as sm
from hive_trio.testing import InProcessHive

pytest.importorskip("claude_agent_sdk", reason="the claude extra (in the test extra) provides the CLI")


async def pending_permissions(hive: InProcessHive) -> list[dict[str, object]]:
    return list((await hive.host("permissions"))["permissions"])


async def status_row(hive: InProcessHive, name: str) -> dict[str, object]:
    rows = (await hive.host("agent_status"))["agent_statuses"]
    return next(r for r in rows if r["name"] == name)


async def test_permission_requests_reach_the_operator_and_both_answers_reach_the_cli(
    root: Path,  # noqa: F811
    model: sm.ScriptedModel,  # noqa: F811
) -> None:
    def reply(request: sm.RecordedRequest) -> sm.Reply:
        last = request.last_user_text()
        for word in ("first", "second"):
            if f"make {word}" in last:
                return sm.tool_use("Bash", {"command": f"echo x > {word}.txt", "description": f"make {word}"})
        return sm.text("Done.")

    model.default = reply
    async with open_hive(root) as hive:
        await hive.coordinator.ops.spawn("alice")
        notes = hive.coordinator.paths.agent_notes("alice")
        for word, verb in (("first", "allow_permission"), ("second", "deny_permission")):
            [message] = await hive.coordinator.send("operator", "alice", f"make {word}")
            await eventually(lambda: pending_permissions(hive), what="a permission request")
            [request] = await pending_permissions(hive)
            assert request["agent"] == "alice" and request["tool"] == "Bash"
            await hive.host(verb, id=request["id"])
            await eventually(lambda m=message: acked(hive, m.id), what="the turn to be acked")
        assert (notes / "first.txt").exists()
        assert not (notes / "second.txt").exists()


async def test_an_operator_interrupt_stops_a_long_turn_and_its_mail_comes_back(
    root: Path,  # noqa: F811
    model: sm.ScriptedModel,  # noqa: F811
) -> None:
    hung = 0

    def reply(request: sm.RecordedRequest) -> sm.Reply:
        nonlocal hung
        if "long job" in request.last_user_text() and hung == 0:
            hung += 1
            return sm.hang(120)
        return sm.text("Done.")

    model.default = reply
    async with open_hive(root) as hive:
        await hive.coordinator.ops.spawn("alice")
        [message] = await hive.coordinator.send("operator", "alice", "long job")
        await model.wait_for(lambda rs: any(r.is_main and "long job" in r.last_user_text() for r in rs))
        started = trio.current_time()
        await hive.host("interrupt", name="alice")
        await eventually(lambda: acked(hive, message.id), what="the redelivered turn to be acked")
        assert trio.current_time() - started < 30  # well before the 120 s hang ended
        asks = [r.last_user_text() for r in model.main_requests if "long job" in r.last_user_text()]
        assert "did not finish" in asks[-1]


async def test_a_401_sets_needs_login_and_the_next_success_clears_it(
    root: Path,  # noqa: F811
    model: sm.ScriptedModel,  # noqa: F811
) -> None:
    logged_in = False
    model.default = lambda request: sm.text("Done.") if logged_in else sm.auth_failure()
    async with open_hive(root, "--auth-retry-delay", "0.5") as hive:
        await hive.coordinator.ops.spawn("alice")
        [message] = await hive.coordinator.send("operator", "alice", "are you there")

        async def needs_login() -> bool:
            return bool((await status_row(hive, "alice"))["needs_login"])

        await eventually(needs_login, what="needs_login")
        logged_in = True
        await eventually(lambda: acked(hive, message.id), what="the turn after the login")
        row = await status_row(hive, "alice")
        assert not row["needs_login"] and row["active_model"] == sm.DEFAULT_MODEL
