"""`hive-trio agent --runtime claude|command`: the harness process the daemon's process backend runs.

It reads `HIVE_AGENT`, `HIVE_SOCKET` and `HIVE_STATE_DIR`, opens the harness channel (`HIVE_HARNESS_FD`)
and the runtime, and serves the turn loop on the agent's socket, reconnecting with backoff when the socket
goes away (a daemon restart). SIGTERM or SIGINT ends it with status 0: a clean exit is a stop, not a crash.
It must never report about another agent, nor hand the channel to the CLI it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import attrs
import trio

from hive_trio.agent.channel import HarnessChannel, open_channel_from_env
from hive_trio.agent.loop import LoopSettings, TurnLoop
from hive_trio.agent.runtimes import Runtime
from hive_trio.records.carry import carried

log = logging.getLogger("hive_trio.agent")

RUNTIMES: Final = ("claude", "command")
RECONNECT_FIRST: Final = 0.2
RECONNECT_MAX: Final = 5.0


class HarnessConfigError(Exception):
    """The environment or the options cannot run a harness; the message says what to fix."""


@attrs.frozen
class HarnessOptions:
    agent: str
    socket: Path
    state_dir: Path
    runtime: str
    turn_command: str | None = None
    model: str | None = None
    turn_timeout: float | None = None
    permission_ttl: float | None = None
    retry_delay: float = 1.0
    auth_retry_delay: float = 30.0


def options_from(args: argparse.Namespace, environ: Mapping[str, str]) -> HarnessOptions:
    missing = [k for k in ("HIVE_AGENT", "HIVE_SOCKET", "HIVE_STATE_DIR") if not environ.get(k)]
    if missing:
        raise HarnessConfigError(
            f"{', '.join(missing)} not set: `hive-trio agent` is run by the daemon's process backend "
            "(--agent-command 'hive-trio agent --runtime claude'), which sets them"
        )
    if args.runtime == "command" and not args.turn_command:
        raise HarnessConfigError("--runtime command needs --turn-command TEMPLATE (e.g. 'codex exec -')")
    for flag in ("turn_timeout", "retry_delay", "auth_retry_delay", "permission_ttl"):
        value = getattr(args, flag)
        if value is not None and not value > 0:
            raise HarnessConfigError(f"--{flag.replace('_', '-')} must be a positive number of seconds")
    # The options are the flags of the same name (add_arguments), but for what the backend's environment says.
    return carried(
        HarnessOptions,
        args,
        agent=environ["HIVE_AGENT"],
        socket=Path(environ["HIVE_SOCKET"]),
        state_dir=Path(environ["HIVE_STATE_DIR"]),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=RUNTIMES, default="claude", help="the agent CLI to drive (default claude)")
    parser.add_argument(
        "--turn-command",
        help="for --runtime command: the command of one turn, run by the shell; the prompt is on stdin, or in "
        "the file {prompt_file}; {mcp_bridge} is the MCP bridge command",
    )
    parser.add_argument("--model", help="the model the claude runtime asks for (default: the CLI's)")
    parser.add_argument("--turn-timeout", type=float, help="seconds a turn may run before it is stopped")
    parser.add_argument(
        "--permission-ttl", type=float, help="seconds the operator has to answer a permission request (deny after)"
    )
    parser.add_argument(
        "--retry-delay", type=float, default=1.0, help="first delay after a failed turn; doubles, capped at 60 s"
    )
    parser.add_argument(
        "--auth-retry-delay",
        type=float,
        default=30.0,
        help="first delay after an authentication failure; doubles, capped at 600 s",
    )


@asynccontextmanager
async def open_runtime(options: HarnessOptions, channel: HarnessChannel) -> AsyncIterator[Runtime]:
    if options.runtime == "claude":
        from hive_trio.agent.runtimes.claude import open_claude_runtime

        async with open_claude_runtime(
            agent=options.agent,
            socket=options.socket,
            state_dir=options.state_dir,
            channel=channel,
            environ=os.environ,
            model=options.model,
            permission_ttl=options.permission_ttl,
        ) as claude:
            yield claude
        return
    from hive_trio.agent.runtimes.command import open_command_runtime

    assert options.turn_command is not None
    async with open_command_runtime(
        agent=options.agent,
        socket=options.socket,
        state_dir=options.state_dir,
        template=options.turn_command,
        environ=os.environ,
    ) as command:
        yield command


async def serve_harness(options: HarnessOptions) -> None:
    """Run the harness until cancelled; the MCP connection is retried for as long as it takes."""
    from hive_trio.clients.mcp import open_agent_client

    async with open_channel_from_env() as channel, open_runtime(options, channel) as runtime:
        settings = LoopSettings(
            turn_timeout=options.turn_timeout,
            backoff_first=options.retry_delay,
            auth_backoff_first=options.auth_retry_delay,
        )
        loop: TurnLoop | None = None
        delay = RECONNECT_FIRST
        while True:
            try:
                async with open_agent_client(options.socket, client_name=f"hive-trio-agent-{options.agent}") as client:
                    delay = RECONNECT_FIRST
                    if loop is None:
                        loop = TurnLoop(
                            agent=options.agent, client=client, runtime=runtime, channel=channel, settings=settings
                        )
                    loop.client = client
                    log.info("%s: connected to %s (runtime %s)", options.agent, options.socket, runtime.name)
                    await loop.run()
            except Exception as exc:  # the socket went away (a daemon restart): reconnect, the mail is durable
                log.warning(
                    "%s: hive connection lost (%s: %s); retrying in %.1f s",
                    options.agent,
                    type(exc).__name__,
                    exc,
                    delay,
                )
            await trio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)


async def run_until_signalled(options: HarnessOptions) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("%s: %s; stopping", options.agent, signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            await serve_harness(options)


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """The `agent` subcommand: 0 after SIGTERM/SIGINT, 2 with a one-line reason for a bad set-up."""
    env = os.environ if environ is None else environ
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        options = options_from(args, env)
        trio.run(run_until_signalled, options)
    except HarnessConfigError as exc:
        print(f"hive-trio agent: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"hive-trio agent: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hive-trio agent", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
