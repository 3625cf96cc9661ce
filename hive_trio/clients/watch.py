"""`hive-trio watch`: the hive's live events as readable lines in a terminal.

Built on the dashboard client: a summary of the snapshot (agents, pending approvals, open questions),
then one line per event, reconnecting (and resuming) for as long as it runs. The `render_*` functions
are pure, so what the operator reads is tested exactly; this module only reads the stream.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Final, TextIO

import trio

from hive_trio.clients.dashboard import (
    DashboardClient,
    DashboardError,
    DashboardRefused,
    DashboardUnavailable,
    open_dashboard_client,
)
from hive_trio.clients.live_state import LiveState
from hive_trio.records import (
    AgentStatus,
    ApprovalAddedEvent,
    ApprovalResolvedEvent,
    ContainerRemovedEvent,
    ContainerStateChangedEvent,
    DashboardEvent,
    DeliveredEvent,
    QuestionAddedEvent,
    QuestionResolvedEvent,
    ResumedFrame,
    SentEvent,
    Snapshot,
    TransientClearedEvent,
    TransientSetEvent,
)
from hive_trio.records.harness import (
    PermissionAddedEvent,
    PermissionResolvedEvent,
    TurnEventEvent,
    TurnFinishedEvent,
    TurnStartedEvent,
)

BODY_PREVIEW: Final = 160
RETRY_SECONDS: Final = 2.0
_COLOURS: Final = {"dim": "2", "bold": "1", "red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35"}

Paint = Callable[[str, str], str]


def plain(_: str, text: str) -> str:
    return text


def ansi(colour: str, text: str) -> str:
    return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m"


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def _preview(body: str) -> str:
    """One line, bounded, with control characters made visible: a body can never drive the terminal."""
    flat = " ".join(body.split())
    flat = "".join(ch if ch.isprintable() else "�" for ch in flat)
    return flat if len(flat) <= BODY_PREVIEW else flat[: BODY_PREVIEW - 1] + "…"


def _safe(text: str) -> str:
    return "".join(ch if ch.isprintable() else "�" for ch in text)


def agent_state(row: AgentStatus) -> str:
    if row.transient is not None:
        return f"{row.transient.value}…"
    if row.failed:
        return "failed"
    if row.running:
        return "paused" if row.paused else "running"
    return "stopped"


def render_snapshot(state: LiveState, paint: Paint = plain) -> list[str]:
    """The summary printed on connect and after every resync."""
    lines = [paint("bold", f"hive (seq {state.seq}) — {len(state.agents)} agent(s)")]
    for row in sorted(state.agents.values(), key=lambda r: r.name):
        status = agent_state(row)
        colour = {"failed": "red", "running": "green"}.get(status, "yellow")
        extra = f"  {_safe(row.status_text)}" if row.status_text else ""
        inbox = f"  [{row.pending_messages} waiting]" if row.pending_messages else ""
        lines.append(f"  {row.name:<16} {paint(colour, status)}{inbox}{paint('dim', extra)}")
    for a in sorted(state.approvals.values(), key=lambda a: a.id):
        what = a.approval_kind.value.replace("_", " ")
        desc = f": {_preview(a.description)}" if a.description else ""
        lines.append(paint("yellow", f"  approval #{a.id} pending — {what} for {a.agent}{desc}"))
    for p in sorted(state.permissions.values(), key=lambda p: p.id):
        ask = f"{p.agent} asks to use {_safe(p.tool)} {_preview(p.input_json)}"
        lines.append(paint("yellow", f"  permission #{p.id} pending — {ask}"))
    for q in sorted(state.questions.values(), key=lambda q: q.id):
        opts = f" [{' / '.join(_safe(o) for o in q.options)}]" if q.options else ""
        lines.append(paint("magenta", f"  question #{q.id} from {q.asker}: {_preview(q.question)}{opts}"))
    return lines


def _seconds_left(deadline_at: float, now: float | None) -> int:
    """Whole seconds until a deadline (0 once it passed); `now` is the test's clock, else the wall clock."""
    return max(0, round(deadline_at - (time.time() if now is None else now)))


def _verdict(ok: bool, why: str | None) -> tuple[str, str]:
    """How an outcome is painted (green when it went through, red otherwise) and its reason, as ` (…)`."""
    return ("green" if ok else "red"), (f" ({_preview(why)})" if why else "")


def render_event(event: DashboardEvent, paint: Paint = plain, *, now: float | None = None) -> str | None:
    """One line for an event, or None for one not worth a line (a spinner cleared by a state change)."""
    match event:
        case SentEvent():
            at = _clock(event.at)
            return f"{paint('dim', at)} {event.sender} → {event.recipient}: {_preview(event.body)}"
        case DeliveredEvent():
            at = _clock(event.at)
            return paint("dim", f"{at} {event.recipient} picked up a message from {event.sender}")
        case ApprovalAddedEvent():
            what = event.approval_kind.value.replace("_", " ")
            sha = f" {event.sha_short}" if event.sha_short else ""
            desc = f": {_preview(event.description)}" if event.description else ""
            return paint("yellow", f"approval #{event.id} requested — {what}{sha} for {event.agent}{desc}")
        case ApprovalResolvedEvent():
            colour, note = _verdict(event.status.value == "approved", event.note)
            return paint(colour, f"approval #{event.id} for {event.agent} {event.status.value}{note}")
        case QuestionAddedEvent():
            opts = f" [{' / '.join(_safe(o) for o in event.options)}]" if event.options else ""
            due = ""
            if event.deadline_at is not None:
                due = f" (answer within {_seconds_left(event.deadline_at, now)}s)"
            return paint("magenta", f"question #{event.id} from {event.asker}: {_preview(event.question)}{opts}{due}")
        case QuestionResolvedEvent():
            how = "cancelled" if event.cancelled else f"answered by {event.answerer}: {_preview(event.answer)}"
            return paint("magenta", f"question #{event.id} {how}")
        case TransientSetEvent():
            return paint("blue", f"{event.name}: {event.transient_kind.value}…")
        case TransientClearedEvent():
            return paint("dim", f"{event.name}: done")
        case ContainerStateChangedEvent():
            row = event.row
            return f"{row.name} is {agent_state(row)}"
        case ContainerRemovedEvent():
            return paint("red", f"{event.name} was removed")
        case TurnStartedEvent():
            return paint("blue", f"{event.agent}: turn {_safe(event.turn_id)} started")
        case TurnEventEvent():
            what = event.tool or event.event_kind.value
            text = f": {_preview(event.text)}" if event.text else ""
            return paint("dim", f"{event.agent} {what}{text}")
        case TurnFinishedEvent():
            colour, why = _verdict(event.outcome.value == "ok", event.error)
            return paint(colour, f"{event.agent}: turn {_safe(event.turn_id)} {event.outcome.value}{why}")
        case PermissionAddedEvent():
            line = f"permission #{event.id}: {event.agent} asks to use {_safe(event.tool)} {_preview(event.input_json)}"
            return paint("yellow", f"{line} (denied in {_seconds_left(event.deadline_at, now)}s unless allowed)")
        case PermissionResolvedEvent():
            colour = "green" if event.decision.value == "allow" else "red"
            always = " (always)" if event.always else ""
            return paint(colour, f"permission #{event.id}: {event.decision.value}{always} by {event.decided_by}")
    return None


def _emit(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


async def _say_when_lost(client: DashboardClient, out: TextIO, paint: Paint) -> None:
    while True:
        await client.wait_disconnected()
        _emit(out, paint("dim", "(connection lost; reconnecting…)"))
        await client.wait_connected()


async def run_watch(url: str, *, out: TextIO | None = None, colour: bool | None = None, wait: bool = False) -> None:
    """Print the hive's live events until cancelled (Ctrl-C), riding out daemon restarts.

    A daemon that is not there at the start is an error (`DashboardUnavailable`), as for every other
    command, unless `wait`. Raises `DashboardRefused` when the token is wrong: waiting cannot fix that.
    """
    stream = sys.stdout if out is None else out
    use_colour = (stream.isatty() and "NO_COLOR" not in os.environ) if colour is None else colour
    paint: Paint = ansi if use_colour else plain
    waiting_said = False
    connected_once = False
    while True:
        try:
            async with (
                open_dashboard_client(url, max_backoff=RETRY_SECONDS) as client,
                trio.open_nursery() as nursery,
            ):
                waiting_said = False
                connected_once = True
                nursery.start_soon(_say_when_lost, client, stream, paint)
                async for update in client:
                    if isinstance(update, Snapshot):
                        for line in render_snapshot(client.state, paint):
                            _emit(stream, line)
                    elif isinstance(update, ResumedFrame):
                        _emit(stream, paint("dim", f"(reconnected; caught up from seq {update.seq})"))
                    else:
                        rendered = render_event(update, paint)
                        if rendered is not None:
                            _emit(stream, rendered)
                nursery.cancel_scope.cancel()
        except DashboardRefused:
            raise
        except DashboardUnavailable:
            if not (wait or connected_once):
                raise
            if not waiting_said:
                _emit(stream, paint("dim", "(waiting for the dashboard to come back…)"))
                waiting_said = True
        except DashboardError as exc:
            if not waiting_said:
                _emit(stream, paint("dim", f"(waiting for the dashboard: {exc})"))
                waiting_said = True
        await trio.sleep(RETRY_SECONDS)


__all__ = ["agent_state", "render_event", "render_snapshot", "run_watch"]
