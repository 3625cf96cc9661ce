"""The turn loop: wait for mail, run a turn, ack it only if it succeeded (docs/AGENTS.md).

hyperhive's `hive-ag3nt` pops the inbox with a long-polled `recv`, builds a wake prompt and spawns
`claude --print --continue` per turn. Here the runtime is handed in (a warm Claude session, or a
command per turn), and the lease rules are the same:
- at (re)connect `requeue_inflight`, so a turn cut short by a crash comes back `redelivered`;
- `ack_turn` only after the turn's outcome is `ok`; any other outcome calls `requeue_inflight` (the
  messages are handed out again, marked `redelivered`) and backs off, exponentially and capped;
- a pause (or an exceeded budget) from the channel parks the loop between turns; an interrupt during a
  turn asks the runtime to stop it.

`Backoff` and `settle` are the sans-IO part; `TurnLoop` is the thin trio adapter around them. The loop
never calls the daemon other than through its own MCP socket and the harness channel.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Final, Literal, NoReturn, Protocol

import attrs
import trio

from hive_trio.agent.channel import Control, HarnessChannel, Outcome
from hive_trio.agent.prompt import InboxMessage, messages_from_recv, wake_prompt
from hive_trio.agent.runtimes import Runtime, Turn, TurnReporter, TurnResult

log = logging.getLogger(__name__)

RECV_WAIT: Final = 170.0  # under the socket's 180 s cap
RECV_MAX: Final = 32
CONTROL_WAIT: Final = 60.0
INTERRUPT_GRACE: Final = 10.0  # after a timeout's interrupt, how long before the turn is cancelled


StopReason = Literal["interrupt", "timeout"]


class HiveCalls(Protocol):
    """The agent's MCP client, as the loop uses it (`clients.mcp.AgentClient` is one)."""

    async def call(self, tool: str, /, **arguments: Any) -> Any: ...


# ------------------------------------------------------------------------------------- sans-IO


@attrs.define
class Backoff:
    """Exponential delay after consecutive failures, capped; a success resets it."""

    first: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    failures: int = 0

    def failed(self) -> float:
        delay = min(self.cap, self.first * self.factor**self.failures)
        self.failures += 1
        return delay

    def succeeded(self) -> None:
        self.failures = 0


@attrs.frozen
class Settlement:
    ack: bool  # ack_turn (ok) or requeue_inflight (anything else)
    delay: float  # how long to wait before the next turn


def settle(outcome: Outcome, backoff: Backoff, *, auth_backoff: Backoff) -> Settlement:
    """What a finished turn means for its mail and for the next turn.

    An interrupt is the operator's doing: the mail comes back at once, without backoff. An auth failure
    has its own, longer backoff: a login is a person's job, so the loop waits instead of crash-looping.
    """
    if outcome == "ok":
        backoff.succeeded()
        auth_backoff.succeeded()
        return Settlement(ack=True, delay=0.0)
    if outcome == "interrupted":
        return Settlement(ack=False, delay=0.0)
    if outcome == "auth_failed":
        return Settlement(ack=False, delay=auth_backoff.failed())
    return Settlement(ack=False, delay=backoff.failed())


# ------------------------------------------------------------------------------------ the loop


@attrs.define
class LoopSettings:
    turn_timeout: float | None = None  # None: a turn may run as long as it likes
    backoff_first: float = 1.0
    backoff_cap: float = 60.0
    auth_backoff_first: float = 30.0
    auth_backoff_cap: float = 600.0
    recv_wait: float = RECV_WAIT


class TurnLoop:
    """One agent's turn loop over its hive client, a runtime, and the harness channel."""

    def __init__(
        self, *, agent: str, client: HiveCalls, runtime: Runtime, channel: HarnessChannel, settings: LoopSettings
    ) -> None:
        self.agent = agent
        self.client = client
        self.runtime = runtime
        self.channel = channel
        self.settings = settings
        self.backoff = Backoff(first=settings.backoff_first, cap=settings.backoff_cap)
        self.auth_backoff = Backoff(first=settings.auth_backoff_first, cap=settings.auth_backoff_cap)
        self.control = Control()
        self._control_changed = trio.Event()
        self._turn_scope: trio.CancelScope | None = None
        self._stop_reason: StopReason | None = None
        self.active_model: str | None = None
        self.turns = 0  # finished turns, any outcome (for tests and logs)

    # ------------------------------------------------------------------ control
    async def serve_control(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """The one long-poll on `wait_control`: keeps `self.control` current, interrupts a running turn."""
        task_status.started()
        while True:
            control = await self.channel.wait_control(CONTROL_WAIT)
            self._set_control(Control(paused=bool(control.paused), budget_exceeded=bool(control.budget_exceeded)))
            if control.interrupt and self._turn_scope is not None:
                log.info("%s: operator interrupt; stopping the turn", self.agent)
                self._nursery.start_soon(self._interrupt, "interrupt")

    def _set_control(self, control: Control) -> None:
        if control != self.control:
            self.control = control
            self._control_changed.set()
            self._control_changed = trio.Event()

    @property
    def parked(self) -> bool:
        return self.control.paused or self.control.budget_exceeded

    async def _wait_unparked(self) -> None:
        announced = False
        while self.parked:
            if not announced:
                reason = "paused" if self.control.paused else "over budget"
                await self.channel.report_state(status_text=reason)
                announced = True
            await self._control_changed.wait()
        if announced:
            await self.channel.report_state(status_text="idle")

    async def _cancel_when_parked(self, scope: trio.CancelScope) -> None:
        while not self.parked:
            await self._control_changed.wait()
        scope.cancel()

    # ------------------------------------------------------------------ mail
    async def _receive(self) -> list[InboxMessage]:
        """Long-poll `recv` until mail comes, or a pause arrives (then hand back what came and park)."""
        while True:
            await self._wait_unparked()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._cancel_when_parked, nursery.cancel_scope)
                result = await self.client.call("recv", wait_seconds=self.settings.recv_wait, max=RECV_MAX)
                nursery.cancel_scope.cancel()
            if self.parked:
                # A recv cut short may have been handed mail whose reply we never read; put it back.
                await self.client.call("requeue_inflight")
                continue
            messages = messages_from_recv(result)
            if messages:
                return messages

    # ------------------------------------------------------------------ turns
    async def run(self) -> NoReturn:
        """Serve the agent until cancelled. The caller requeues at connect (`requeue_inflight`)."""
        await self.client.call("requeue_inflight")
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.serve_control)
            while True:
                messages = await self._receive()
                await self.run_one(messages)

    async def run_one(self, messages: list[InboxMessage]) -> TurnResult:
        turn = Turn(
            turn_id=uuid.uuid4().hex[:16],
            message_ids=tuple(m.id for m in messages),
            prompt=wake_prompt(self.agent, messages),
        )
        await self.channel.turn_started(turn.turn_id, list(turn.message_ids))
        await self.channel.report_state(status_text="working")
        result = await self._run_turn(turn)
        self.turns += 1
        log.info("%s: turn %s %s %s", self.agent, turn.turn_id, result.outcome, result.error or "")
        budget_exceeded = await self.channel.turn_finished(
            turn.turn_id, result.outcome, error=result.error, usage=result.usage
        )
        decision = settle(result.outcome, self.backoff, auth_backoff=self.auth_backoff)
        # The lease is settled shielded: a SIGTERM between the turn and its ack must not leave an ok turn
        # unacked (it would run again) any more than a cancel may skip a requeue.
        with trio.CancelScope(shield=True):
            await self.client.call("ack_turn" if decision.ack else "requeue_inflight")
        if budget_exceeded:
            self._set_control(attrs.evolve(self.control, budget_exceeded=True))
        await self.channel.report_state(status_text="idle" if decision.ack else f"backing off after {result.outcome}")
        if decision.delay:
            await trio.sleep(decision.delay)
        return result

    async def _run_turn(self, turn: Turn) -> TurnResult:
        reporter = TurnReporter(self.channel, turn.turn_id, self.active_model)
        self._stop_reason = None
        result: TurnResult | None = None
        with trio.CancelScope() as scope:
            self._turn_scope = scope
            try:
                async with trio.open_nursery() as nursery:
                    if self.settings.turn_timeout is not None:
                        nursery.start_soon(self._timeout, self.settings.turn_timeout, scope)
                    result = await self.runtime.run_turn(turn, reporter)
                    nursery.cancel_scope.cancel()
            except Exception as exc:  # a runtime that crashed fails its turn, never the harness
                log.exception("%s: turn %s crashed", self.agent, turn.turn_id)
                result = TurnResult("failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                self._turn_scope = None
                self.active_model = reporter.active_model
        if result is None:
            # The runtime ignored the interrupt for the whole grace: its session is in an unknown state.
            with trio.CancelScope(shield=True), trio.move_on_after(INTERRUPT_GRACE):
                await self.runtime.reset()
            reason = self._stop_reason or "timeout"
            return TurnResult("interrupted" if reason == "interrupt" else "timeout", error=self._stop_error())
        if self._stop_reason is not None and result.outcome != "auth_failed":
            outcome: Outcome = "interrupted" if self._stop_reason == "interrupt" else "timeout"
            return TurnResult(outcome, error=self._stop_error(), usage=result.usage)
        return result

    def _stop_error(self) -> str:
        if self._stop_reason == "interrupt":
            return "interrupted by the operator"
        return f"the turn ran over {self.settings.turn_timeout} s"

    async def _interrupt(self, reason: StopReason) -> None:
        if self._turn_scope is None or self._stop_reason is not None:
            return
        self._stop_reason = reason
        await self.runtime.interrupt()
        turn_scope = self._turn_scope
        # If the runtime does not stop within the grace, the turn is cancelled (and the runtime reset).
        await trio.sleep(INTERRUPT_GRACE)
        if self._turn_scope is turn_scope:
            turn_scope.cancel()

    async def _timeout(self, seconds: float, turn_scope: trio.CancelScope) -> None:
        await trio.sleep(seconds)
        log.warning("%s: turn over %s s; interrupting it", self.agent, seconds)
        await self._interrupt("timeout")
