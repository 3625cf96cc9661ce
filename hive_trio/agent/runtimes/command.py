"""The command-per-turn runtime: any agent CLI run once per turn from a template (Codex, Gemini, opencode).

`--turn-command 'codex exec --json -'` is run by the shell for each turn, in the agent's state dir. The
prompt is on its stdin, or in a file when the template names `{prompt_file}`; `{mcp_bridge}` is the
shell-quoted bridge command to the agent's socket (also in `$HIVE_MCP_BRIDGE`), for the CLI's MCP config.
Exit status 0 is a successful turn; anything else fails it (the mail comes back). Each agent keeps its
own config homes under `$HIVE_STATE_DIR/.hive-harness/home/` (`CODEX_HOME`, `XDG_CONFIG_HOME`, ...), as
its Claude config is kept per agent. An interrupt sends SIGTERM to the turn's process group, then SIGKILL.
This module never reads the hive socket; stdout lines are reported as the turn's text.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Final

import trio

from hive_trio.agent.channel import HARNESS_FD_ENV
from hive_trio.agent.runtimes import Turn, TurnReporter, TurnResult
from hive_trio.agent.runtimes.claude import bridge_command

SHELL: Final = "/bin/sh"
HOME_DIR: Final = ".hive-harness/home"
KILL_GRACE: Final = 5.0
MAX_LINE_EVENTS: Final = 200  # per turn; the rest is summarised, so a chatty CLI cannot flood the transcript
LINE_MAX: Final = 4000
STDERR_TAIL: Final = 20
# Each CLI's config home, kept per agent; a value set in the agent's environment wins.
CONFIG_HOMES: Final = {"CODEX_HOME": "codex", "XDG_CONFIG_HOME": "xdg-config", "XDG_DATA_HOME": "xdg-data"}
PLACEHOLDERS: Final = frozenset({"prompt_file", "mcp_bridge", "agent", "socket", "state_dir"})


class TemplateError(ValueError):
    """The turn command template names a placeholder we do not fill, or is malformed."""


def check_template(template: str) -> None:
    import string

    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise TemplateError(f"--turn-command {template!r}: {exc} (write a literal brace as {{{{ or }}}})") from exc
    unknown = sorted(fields - PLACEHOLDERS)
    if unknown:
        known = ", ".join(sorted(PLACEHOLDERS))
        raise TemplateError(f"--turn-command names unknown placeholder(s) {', '.join(unknown)}; known: {known}")


def render(template: str, *, prompt_file: Path, agent: str, socket: Path, state_dir: Path) -> str:
    return template.format(
        prompt_file=shlex.quote(str(prompt_file)),
        mcp_bridge=shlex.join(bridge_command(socket)),
        agent=shlex.quote(agent),
        socket=shlex.quote(str(socket)),
        state_dir=shlex.quote(str(state_dir)),
    )


def turn_environment(environ: Mapping[str, str], *, state_dir: Path, socket: Path) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k != HARNESS_FD_ENV}
    home = state_dir / HOME_DIR
    for key, sub in CONFIG_HOMES.items():
        env.setdefault(key, str(home / sub))
    env["HIVE_MCP_BRIDGE"] = shlex.join(bridge_command(socket))
    return env


class CommandRuntime:
    name = "command"

    def __init__(self, *, agent: str, socket: Path, state_dir: Path, template: str, environ: Mapping[str, str]) -> None:
        check_template(template)
        self.agent = agent
        self.socket = socket
        self.state_dir = state_dir
        self.template = template
        self.env = turn_environment(environ, state_dir=state_dir, socket=socket)
        self.uses_prompt_file = "{prompt_file}" in template
        self._process: trio.Process | None = None

    def _prepare(self) -> None:
        for key in CONFIG_HOMES:
            Path(self.env[key]).mkdir(parents=True, exist_ok=True)

    async def run_turn(self, turn: Turn, reporter: TurnReporter) -> TurnResult:
        await trio.to_thread.run_sync(self._prepare)
        prompt_file = self.state_dir / ".hive-harness" / f"prompt-{turn.turn_id}.md"
        await trio.to_thread.run_sync(prompt_file.write_text, turn.prompt)
        command = render(
            self.template, prompt_file=prompt_file, agent=self.agent, socket=self.socket, state_dir=self.state_dir
        )
        stderr_tail: list[str] = []
        try:
            process = await trio.lowlevel.open_process(
                [SHELL, "-c", command],
                stdin=subprocess.DEVNULL if self.uses_prompt_file else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=str(self.state_dir),
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            return TurnResult("failed", error=f"could not run the turn command: {exc}")
        self._process = process
        try:
            async with trio.open_nursery() as nursery:
                if process.stdin is not None:
                    nursery.start_soon(self._feed, process.stdin, turn.prompt.encode())
                assert process.stdout is not None and process.stderr is not None
                nursery.start_soon(self._lines, process.stdout, reporter)
                nursery.start_soon(self._tail, process.stderr, stderr_tail)
                await process.wait()
        finally:
            self._process = None
            if process.returncode is None:
                with trio.CancelScope(shield=True):
                    await self._kill(process)
            with suppress(OSError):
                await trio.to_thread.run_sync(prompt_file.unlink)
        if process.returncode == 0:
            return TurnResult("ok")
        detail = " | ".join(stderr_tail[-5:])
        return TurnResult("failed", error=f"the turn command exited with status {process.returncode}: {detail}"[:2000])

    async def _feed(self, stdin: trio.abc.SendStream, data: bytes) -> None:
        async with stdin:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stdin.send_all(data)

    async def _lines(self, stream: trio.abc.ReceiveStream, reporter: TurnReporter) -> None:
        from hive_trio.rules.framing import FrameTooLarge, LineFramer

        framer = LineFramer(max_frame=1024 * 1024)
        sent = dropped = 0
        async with stream:
            while data := await stream.receive_some(65536):
                try:
                    lines = framer.feed(data)
                except FrameTooLarge:
                    framer = LineFramer(max_frame=1024 * 1024)
                    lines = [b"(an over-long line was dropped)"]
                for line in lines:
                    text = line.decode(errors="replace").rstrip()
                    if not text:
                        continue
                    if sent < MAX_LINE_EVENTS:
                        sent += 1
                        await reporter.event("text", text=text[:LINE_MAX])
                    else:
                        dropped += 1
        if dropped:
            await reporter.event("text", text=f"({dropped} more lines of output not kept)")

    async def _tail(self, stream: trio.abc.ReceiveStream, tail: list[str]) -> None:
        buffer = b""
        async with stream:
            while data := await stream.receive_some(65536):
                buffer = (buffer + data)[-16384:]
        tail.extend(buffer.decode(errors="replace").splitlines()[-STDERR_TAIL:])

    async def _kill(self, process: trio.Process) -> None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with trio.move_on_after(KILL_GRACE):
            await process.wait()
            return
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()

    async def interrupt(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)

    async def reset(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            await self._kill(process)


@asynccontextmanager
async def open_command_runtime(
    *, agent: str, socket: Path, state_dir: Path, template: str, environ: Mapping[str, str]
) -> AsyncIterator[CommandRuntime]:
    runtime = CommandRuntime(agent=agent, socket=socket, state_dir=state_dir, template=template, environ=environ)
    try:
        yield runtime
    finally:
        with trio.CancelScope(shield=True):
            await runtime.reset()
