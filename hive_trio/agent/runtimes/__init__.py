"""What the turn loop needs of an agent CLI: run one turn from a prompt, stop it on request.

A runtime reports the turn's stream through the `TurnReporter` it is given and returns a `TurnResult`;
an exception out of `run_turn` is a crashed turn (the loop reports it as `failed`). Runtimes never talk
to the hive socket themselves: the loop owns the lease (recv, ack, requeue).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from hive_trio.agent.channel import EventKind, HarnessChannel, Outcome, Usage


@attrs.frozen
class Turn:
    turn_id: str
    message_ids: tuple[int, ...]
    prompt: str


@attrs.frozen
class TurnResult:
    outcome: Outcome
    error: str | None = None
    usage: Usage | None = None


@attrs.define
class TurnReporter:
    """Forwards a turn's stream to the channel; a report that fails never fails the turn."""

    channel: HarnessChannel
    turn_id: str
    active_model: str | None = None

    async def event(
        self,
        kind: EventKind,
        *,
        text: str | None = None,
        tool: str | None = None,
        input: Mapping[str, Any] | None = None,
        is_error: bool = False,
    ) -> None:
        await self.channel.turn_event(self.turn_id, kind, text=text, tool=tool, input=input, is_error=is_error)

    async def model(self, model: str | None) -> None:
        # `<synthetic>` is what the CLI calls its own stand-in reply to an API error, not a model.
        if model and model != self.active_model and not model.startswith("<"):
            self.active_model = model
            await self.channel.report_state(active_model=model)


class Runtime(Protocol):
    """One agent CLI, alive for as long as the harness is (see `open_*_runtime`)."""

    name: str

    async def run_turn(self, turn: Turn, reporter: TurnReporter) -> TurnResult: ...

    async def interrupt(self) -> None:
        """Stop the running turn soon; `run_turn` then returns `interrupted`. No-op between turns."""
        ...

    async def reset(self) -> None:
        """Drop whatever the runtime holds after a turn was cancelled (a session in an unknown state)."""
        ...
