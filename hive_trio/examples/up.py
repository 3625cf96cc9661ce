"""`hive-trio up`: the whole hive on embedded defaults, with example agents that really talk.

It runs the same `open_hive` as the daemon, with state in `./hive-state`, the dashboard on loopback,
three example agents (spawned directly, as the operator would) and the example manager, all on the
process backend and all real MCP clients of their sockets. `--runtime claude` runs the same layout with
real Claude Code agents instead (the harness, `hive-trio agent --runtime claude`, as the agent and the
manager command); the default stays the offline examples. It prints where to look and what to try,
and runs until Ctrl-C. It must never do anything the daemon itself would not: no shortcuts into the
stores, only lifecycle operations and the sockets.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import sys
from pathlib import Path
from typing import Final, Literal

import attrs
import trio

from hive_trio.cli.discovery import UP_STATE_DIR, embedded_runtime_dir
from hive_trio.core.coordinator import Coordinator
from hive_trio.daemon import open_hive, raise_open_file_limit, tune_garbage_collection
from hive_trio.dashboard.token import dashboard_url
from hive_trio.rules.config import (
    DEFAULT_AGENT_COMMAND,
    Config,
    default_runtime_dir,
    default_state_dir,
    python_module_command,
)

EXAMPLE_AGENTS: Final = ("alice", "bob", "carol")

UpRuntime = Literal["examples", "claude"]
UP_RUNTIMES: Final[tuple[UpRuntime, ...]] = ("examples", "claude")


def example_agent_command(python: str = sys.executable) -> str:
    return python_module_command("hive_trio.examples.agent", python)


def example_manager_command(python: str = sys.executable) -> str:
    return python_module_command("hive_trio.examples.manager", python)


def claude_harness_command(python: str = sys.executable) -> str:
    """The real-agent harness with this Python: the daemon's default agent command."""
    return f"{python_module_command('hive_trio', python)} agent --runtime claude"


def claude_runtime_missing() -> str | None:
    """Why `--runtime claude` cannot run here (the claude extra is not installed), or None."""
    import importlib.util

    if importlib.util.find_spec("claude_agent_sdk") is None:
        return "--runtime claude needs the claude extra: pip install 'hive-trio[claude]'"
    return None


def up_config(config: Config, *, runtime: UpRuntime = "examples") -> Config:
    """`config` with `up`'s defaults wherever the operator left the daemon's defaults in place.

    State goes to `./hive-state`, and the runtime dir follows the CLI's rule for `up`
    (`cli.discovery.embedded_runtime_dir`: under the state dir, or a private /tmp dir when socket paths there
    would be too long), so `run_up` called directly finds the same hive the `hive-trio` commands do,
    and never replaces the sockets of a `hive-trio daemon` running on the defaults. Agents and manager
    run the bundled examples, with this Python; with `runtime="claude"` they run the Claude harness.
    An agent or manager command the operator set is kept either way.
    """
    state_dir = UP_STATE_DIR.resolve() if config.state_dir == default_state_dir() else config.state_dir
    runtime_dir = config.runtime_dir
    if runtime_dir == default_runtime_dir():
        runtime_dir = embedded_runtime_dir(state_dir)
    return attrs.evolve(
        config,
        state_dir=state_dir,
        runtime_dir=runtime_dir,
        # The daemon's default is the real-agent harness; `up` asks for the examples by name unless
        # told `--runtime claude`, and then names the harness with this very Python.
        agent_command=(example_agent_command() if runtime == "examples" else claude_harness_command())
        if config.agent_command == DEFAULT_AGENT_COMMAND
        else config.agent_command,
        manager_command=config.manager_command
        or (example_manager_command() if runtime == "examples" else claude_harness_command()),
    )


async def spawn_examples(coord: Coordinator, names: tuple[str, ...] = EXAMPLE_AGENTS) -> list[str]:
    """Spawn the examples that are not there yet. A name the operator destroyed (a tombstone) stays gone."""
    tombstones = set(await coord.tombstones())
    spawned = []
    for name in names:
        if name in tombstones or await coord.find_agent(name) is not None:
            continue
        await coord.ops.spawn(name)
        spawned.append(name)
    return spawned


def cli_name() -> str:
    """How the operator should type `hive-trio`: bare when it is on PATH, else the venv's path (`.venv/bin/...`)."""
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("hive-trio")
    if script is None or script.name != "hive-trio" or (found and Path(found).resolve() == script):
        return "hive-trio"
    try:
        return shlex.quote(str(script.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(script))


@attrs.frozen
class Pending:
    """What `up`'s banner may truthfully say waits for the operator (issue 11: no stale hints)."""

    questions: int = 0
    approvals: int = 0
    # The examples act once, remembered by a marker in their state dirs; absent, they are about to.
    will_ask: bool = False
    will_propose: bool = False


async def pending_for_banner(
    coord: Coordinator, names: tuple[str, ...] = EXAMPLE_AGENTS, *, runtime: UpRuntime = "examples"
) -> Pending:
    from hive_trio.examples.agent import ASKED_MARKER
    from hive_trio.examples.manager import PROPOSED_MARKER
    from hive_trio.records import ApprovalStatus

    present = [n for n in names if await coord.find_agent(n) is not None]
    asker = present[0] if present else None
    if runtime != "examples":
        # Claude agents ask and propose only when their model decides to: promise nothing.
        asker = None
    will_ask = asker is not None and not await trio.Path(coord.paths.agent_notes(asker) / ASKED_MARKER).exists()
    will_propose = asker is not None and not await trio.Path(coord.paths.manager_notes / PROPOSED_MARKER).exists()
    return Pending(
        questions=len(await coord.list_questions()),
        approvals=len(await coord.list_approvals(status=ApprovalStatus.PENDING)),
        will_ask=will_ask,
        will_propose=will_propose,
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def banner(
    coord: Coordinator, config: Config, pending: Pending | None = None, *, runtime: UpRuntime = "examples"
) -> str:
    state = shlex.quote(str(config.state_dir))
    # From this directory the commands find `up`'s hive on their own (cli.discovery.discovered_hive).
    found = config.state_dir == UP_STATE_DIR.resolve() and config.runtime_dir == embedded_runtime_dir(config.state_dir)
    flags = "" if found else f" --runtime-dir {shlex.quote(str(config.runtime_dir))}"
    cli = cli_name()
    if coord.dashboard_url:
        dashboard = f"dashboard: {dashboard_url(config)}"
    else:
        dashboard = "dashboard: off (dashboard_enabled = false)"
    pending = pending or Pending()
    asker = EXAMPLE_AGENTS[0]
    if pending.questions:
        ask_hint = f"             # {_plural(pending.questions, 'open question')} for you"
    elif pending.will_ask:
        ask_hint = f"             # {asker} asks you something in a moment"
    else:
        ask_hint = ""
    if pending.approvals:
        approve_hint = f"             # {_plural(pending.approvals, 'approval')} waiting for you"
    elif pending.will_propose:
        approve_hint = "             # the manager proposes a config change in a moment"
    else:
        approve_hint = ""
    answer_line = f'\n  {cli} answer ID "the tests"{flags}' if pending.questions or pending.will_ask else ""
    approve_line = (
        f"\n  {cli} approve ID{flags}            # {asker} is rebuilt and greets in Swedish"
        if pending.approvals or pending.will_propose
        else ""
    )
    if runtime == "claude":
        running = (
            f"Claude Code agents {', '.join(EXAMPLE_AGENTS)} and a Claude Code manager are running"
            " (harness: hive-trio agent --runtime claude).\n"
            "  Each logs in on its own (its claude/ dir under the state dir) unless ANTHROPIC_API_KEY is set;\n"
            "  the dashboard shows who needs a login, and each tool use that waits for your permission."
        )
    else:
        running = f"example agents {', '.join(EXAMPLE_AGENTS)} and an example manager are running."
    return f"""\
hive-trio is up: {running}
  state:   {config.state_dir}
  runtime: {config.runtime_dir}
  {dashboard}

Open the dashboard above, or try these in another terminal here:
  {cli} status{flags}
  {cli} questions{flags}{ask_hint}{answer_line}
  {cli} approvals{flags}{approve_hint}{approve_line}
  {cli} inbox{flags}                 # what the agents sent you
  {cli} send alice "hi from the operator"{flags}
  {cli} watch{flags}                 # the live event stream
  tail -f {state}/logs/*.log

Ctrl-C stops the hive; the agents stop with it, and everything stays in {config.state_dir}.
"""


async def run_up(config: Config, runtime: UpRuntime = "examples") -> None:
    """Run `hive-trio up` until SIGINT or SIGTERM (the CLI calls `trio.run(run_up, config, runtime)`)."""
    config = up_config(config, runtime=runtime)
    raise_open_file_limit()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_hive(config) as hive:
            coord = hive.coordinator
            await spawn_examples(coord)
            tune_garbage_collection()  # a long-running daemon, like `serve_daemon`
            pending = await pending_for_banner(coord, runtime=runtime)
            print(banner(coord, config, pending, runtime=runtime), flush=True)
            async for _ in signals:
                print("stopping the hive…", flush=True)
                break
