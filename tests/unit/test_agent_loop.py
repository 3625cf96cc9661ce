"""The turn loop's lease rules, with a fake hive client, runtime and channel (protocol logic only)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
import trio

from hive_trio.agent.channel import Control, NullHarnessChannel, Outcome, Usage, harness_fd_from_env
from hive_trio.agent.loop import Backoff, LoopSettings, TurnLoop, settle
from hive_trio.agent.prompt import InboxMessage, messages_from_recv, render_event, wake_prompt
from hive_trio.agent.runtimes import Turn, TurnReporter, TurnResult


class FakeHive:
    """Inbox with lease semantics: recv hands out, ack_turn acks, requeue_inflight puts back."""

    def __init__(self, bodies: list[str]) -> None:
        self.inbox = [{"id": i + 1, "from": "operator", "body": b, "redelivered": False} for i, b in enumerate(bodies)]
        self.inflight: list[dict[str, Any]] = []
        self.acked: list[int] = []
        self.calls: list[str] = []
        self.changed = trio.Event()

    async def call(self, tool: str, /, **arguments: Any) -> Any:
        self.calls.append(tool)
        if tool == "recv":
            if not self.inbox:
                await trio.sleep(arguments["wait_seconds"])
                return {"messages": []}
            batch, self.inbox = self.inbox[: arguments["max"]], self.inbox[arguments["max"] :]
            self.inflight += batch
            return {"messages": batch}
        if tool == "ack_turn":
            self.acked += [m["id"] for m in self.inflight]
            self.inflight = []
        elif tool == "requeue_inflight":
            self.inbox = [{**m, "redelivered": True} for m in self.inflight] + self.inbox
            self.inflight = []
        self.changed.set()
        self.changed = trio.Event()
        return {}


class FakeRuntime:
    name = "fake"

    def __init__(self, outcomes: list[Outcome], *, hang: bool = False) -> None:
        self.outcomes = outcomes
        self.prompts: list[str] = []
        self.hang = hang
        self.interrupted = trio.Event()
        self.resets = 0

    async def run_turn(self, turn: Turn, reporter: TurnReporter) -> TurnResult:
        self.prompts.append(turn.prompt)
        await reporter.event("text", text="working on it")
        if self.hang:
            await self.interrupted.wait()
            self.interrupted = trio.Event()  # the next turn hangs again
            return TurnResult("ok")
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        return TurnResult(outcome, usage=Usage(model="m1", input_tokens=3))

    async def interrupt(self) -> None:
        self.interrupted.set()

    async def reset(self) -> None:
        self.resets += 1


class RecordingChannel(NullHarnessChannel):
    def __init__(self) -> None:
        self.finished: list[tuple[str, Outcome]] = []
        self.events: list[str] = []
        self.controls: trio.MemorySendChannel[Control]
        self.controls, self._controls = trio.open_memory_channel[Control](10)
        self.state = Control()

    async def turn_event(self, turn_id: str, kind: Any, **kw: Any) -> None:
        self.events.append(kind)

    async def turn_finished(self, turn_id: str, outcome: Outcome, **kw: Any) -> bool:
        self.finished.append((turn_id, outcome))
        return False

    async def wait_control(self, wait_seconds: float) -> Control:
        # Like the daemon's: the current state after the wait, with an interrupt returned once.
        with trio.move_on_after(wait_seconds):
            control = await self._controls.receive()
            self.state = attrs.evolve(control, interrupt=False)
            return control
        return self.state


def make_loop(hive: FakeHive, runtime: FakeRuntime, channel: RecordingChannel, **settings: Any) -> TurnLoop:
    return TurnLoop(agent="alice", client=hive, runtime=runtime, channel=channel, settings=LoopSettings(**settings))


async def until(hive: FakeHive, check: Any) -> None:
    while not check():  # noqa: ASYNC110 (the fakes have no event for every condition)
        await trio.sleep(0.5)  # virtual time: each jump waits the clock's 50 ms real threshold


def test_backoff_doubles_caps_and_resets() -> None:
    b = Backoff(first=1, cap=5)
    assert [b.failed() for _ in range(5)] == [1, 2, 4, 5, 5]
    b.succeeded()
    assert b.failed() == 1


def test_settle_acks_only_ok_and_waits_longer_after_an_auth_failure() -> None:
    backoff, auth = Backoff(first=1), Backoff(first=30)
    assert settle("failed", backoff, auth_backoff=auth).delay == 1
    assert settle("auth_failed", backoff, auth_backoff=auth).delay == 30
    assert settle("interrupted", backoff, auth_backoff=auth) == settle("interrupted", backoff, auth_backoff=auth)
    assert not settle("interrupted", backoff, auth_backoff=auth).ack
    assert not settle("timeout", backoff, auth_backoff=auth).ack
    ok = settle("ok", backoff, auth_backoff=auth)
    assert ok.ack and ok.delay == 0 and backoff.failures == 0 and auth.failures == 0


async def test_an_ok_turn_is_acked_and_a_failed_one_comes_back_redelivered(autojump_clock: Any) -> None:
    hive, runtime, channel = FakeHive(["hello"]), FakeRuntime(["failed", "ok"]), RecordingChannel()
    loop = make_loop(hive, runtime, channel)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop.run)
        await until(hive, lambda: hive.acked)
        nursery.cancel_scope.cancel()
    assert hive.calls[0] == "requeue_inflight"  # at boot
    assert hive.acked == [1]
    assert [o for _, o in channel.finished] == ["failed", "ok"]
    assert "did not finish" not in runtime.prompts[0] and "did not finish" in runtime.prompts[1]
    assert "text" in channel.events


async def test_an_interrupt_stops_the_turn_and_the_mail_comes_back(autojump_clock: Any) -> None:
    hive, runtime, channel = FakeHive(["long job"]), FakeRuntime([], hang=True), RecordingChannel()
    loop = make_loop(hive, runtime, channel)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop.run)
        await until(hive, lambda: runtime.prompts)
        await channel.controls.send(Control(interrupt=True))
        await until(hive, lambda: len(runtime.prompts) == 2)
        nursery.cancel_scope.cancel()
    assert channel.finished[0][1] == "interrupted"
    assert hive.acked == []
    assert "did not finish" in runtime.prompts[1]  # the mail came back at once, redelivered


async def test_a_turn_over_its_timeout_is_interrupted_then_cancelled(autojump_clock: Any) -> None:
    class Stubborn(FakeRuntime):
        async def run_turn(self, turn: Turn, reporter: TurnReporter) -> TurnResult:
            await trio.sleep_forever()
            raise AssertionError

    hive, runtime, channel = FakeHive(["x"]), Stubborn([]), RecordingChannel()
    loop = make_loop(hive, runtime, channel, turn_timeout=5.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop.run)
        await until(hive, lambda: channel.finished)
        nursery.cancel_scope.cancel()
    assert channel.finished[0][1] == "timeout"
    assert runtime.interrupted.is_set() and runtime.resets == 1
    assert hive.acked == []


async def test_a_crashing_runtime_fails_the_turn_not_the_harness(autojump_clock: Any) -> None:
    class Crashing(FakeRuntime):
        async def run_turn(self, turn: Turn, reporter: TurnReporter) -> TurnResult:
            if not self.prompts:
                self.prompts.append(turn.prompt)
                raise RuntimeError("the CLI died")
            return TurnResult("ok")

    hive, runtime, channel = FakeHive(["x"]), Crashing([]), RecordingChannel()
    loop = make_loop(hive, runtime, channel)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop.run)
        await until(hive, lambda: hive.acked)
        nursery.cancel_scope.cancel()
    assert [o for _, o in channel.finished] == ["failed", "ok"]


async def test_a_pause_parks_the_loop_between_turns(autojump_clock: Any) -> None:
    hive, runtime, channel = FakeHive([]), FakeRuntime([]), RecordingChannel()
    loop = make_loop(hive, runtime, channel)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop.run)
        await channel.controls.send(Control(paused=True))
        await trio.sleep(1)
        hive.inbox.append({"id": 7, "from": "bob", "body": "hi", "redelivered": False})
        await trio.sleep(300)
        assert runtime.prompts == []  # parked: no turn while paused
        await channel.controls.send(Control(paused=False))
        await until(hive, lambda: hive.acked)
        nursery.cancel_scope.cancel()
    assert hive.acked == [7]


def test_helper_events_are_rendered_for_a_reader() -> None:
    event = {
        "event": "approval_resolved",
        "id": 3,
        "agent": "alice",
        "status": "approved",
        "note": "ok",
        "sha": "ab" * 20,
    }
    message = InboxMessage(id=9, sender="system", body=json.dumps(event))
    prompt = wake_prompt("alice", [message, InboxMessage(id=10, sender="bob", body="{not json", redelivered=True)])
    assert "Approval #3 for alice (commit abababababab) was approved: ok." in prompt
    assert '"event"' not in prompt  # no raw JSON
    assert "Message 10 from bob" in prompt and "{not json" in prompt and "did not finish" in prompt
    assert render_event({"event": "brand_new", "x": 1}) == "Hive event `brand_new` (x: 1)."
    asked = {"event": "question_asked", "id": 4, "asker": "bob", "question": "tabs?", "options": ["yes", "no"]}
    assert "bob asks you (question #4): tabs? Options (pick one): yes, no." in render_event(asked)


def test_bad_recv_rows_and_channel_fds_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="not a recv message"):
        messages_from_recv({"messages": [{"id": "x"}]})
    assert harness_fd_from_env({}) is None
    assert harness_fd_from_env({"HIVE_HARNESS_FD": "5"}) == 5
    with pytest.raises(ValueError, match="not a file descriptor"):
        harness_fd_from_env({"HIVE_HARNESS_FD": "five"})
