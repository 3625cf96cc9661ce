"""`hive-trio`: run the daemon, or drive a running one through host.sock (the `hivectl` of this project).

`main` and the parser live here, with the commands that run something in the foreground (`daemon`, `up`,
`watch`, `dashboard-url`, `mcp-bridge`). The operator commands are in `cli.operator`, config and hive
discovery in `cli.discovery`. Subcommands' heavy modules (the daemon, the examples, the watch view) are
imported only when that subcommand runs, so `hive-trio status` starts fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from hive_trio.cli.discovery import (
    EXIT_OK,
    UP_STATE_DIR,
    CliError,
    discovered_hive,
    embedded_runtime_dir,
    load_cli_config,
)
from hive_trio.cli.operator import (
    _host_call,
    _print,
    cmd_answer,
    cmd_approvals,
    cmd_broadcast,
    cmd_questions,
    cmd_send,
    cmd_status,
    cmd_tombstones,
    format_table,
    lifecycle_command,
    reaching_the_daemon,
    resolve_command,
)

# `hive-trio daemon` logs the signal that stops it under the daemon's name, as before the CLI took it.
log = logging.getLogger("hive_trio.daemon")

PROG: Final = "hive-trio"
READY_LINE: Final = "hive-trio is ready"


# ---------------------------------------------------------------------------------------- daemon


def cmd_daemon(args: argparse.Namespace) -> int:
    from hive_trio.daemon import serve_daemon
    from hive_trio.lifecycle.backends.agent_log import reopen_agent_logs
    from hive_trio.service.journal import configure_logging

    config = load_cli_config(args)
    log_file = configure_logging(args.log_level, log_file=Path(args.log_file) if args.log_file else None)

    async def serve() -> None:
        # Opened before the hive starts, so a signal during start-up is queued, not a KeyboardInterrupt.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async with trio.open_nursery() as nursery:
                host_socket = await nursery.start(serve_daemon, config)
                # One line on stdout once every socket is bound, whatever the log level: scripts wait for it.
                print(f"{READY_LINE}: host.sock at {host_socket}", flush=True)
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        # logrotate moved the files: reopen them at their paths and keep running.
                        if log_file is not None:
                            log_file.reopen()
                        log.info(
                            "received SIGHUP: reopened the log files of the daemon and %d agents", reopen_agent_logs()
                        )
                        continue
                    log.info("received %s, shutting down", signal.Signals(signum).name)
                    break
                nursery.cancel_scope.cancel()

    _run_refusing_in_one_line(serve)
    return EXIT_OK


def _run_refusing_in_one_line(main: Callable[..., Any], *args: Any) -> None:
    """`trio.run`, with a refusal at start (a live lock, a port taken...) as one line instead of a traceback."""
    from hive_trio.errors import HiveError, leaves

    try:
        trio.run(main, *args)
    except HiveError as exc:
        raise CliError(str(exc)) from None
    except BaseExceptionGroup as group:
        # A refusal at start arrives wrapped by the nurseries it crossed.
        refusals, rest = group.split(HiveError)
        if refusals is None or rest is not None:
            raise
        raise CliError("; ".join(str(e) for e in leaves(refusals))) from None


def _configure_logging(level: str) -> None:
    from hive_trio.service.journal import configure_logging

    configure_logging(level)


def cmd_up(args: argparse.Namespace) -> int:
    from hive_trio.examples.up import claude_runtime_missing, run_up

    if args.runtime == "claude" and (missing := claude_runtime_missing()) is not None:
        raise CliError(missing)

    state_dir = Path(args.state_dir or UP_STATE_DIR).resolve()
    runtime_dir = Path(args.runtime_dir).resolve() if args.runtime_dir else embedded_runtime_dir(state_dir)
    args.state_dir, args.runtime_dir = str(state_dir), str(runtime_dir)
    config = load_cli_config(args)
    _configure_logging(args.log_level)
    _run_refusing_in_one_line(run_up, config, args.runtime)
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from hive_trio.clients import watch
    from hive_trio.errors import HiveError

    # The daemon says where its dashboard really is, so the runtime dir alone is enough.
    url = str(_host_call(args, "dashboard_url")["url"])
    try:
        # The dashboard refused the token: one line, not a traceback.
        trio.run(watch.run_watch, url)
    except HiveError as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


def cmd_dashboard_url(args: argparse.Namespace) -> int:
    # Asked of the running daemon: the port it really bound, not what this invocation's config says.
    return _print(args, _host_call(args, "dashboard_url"), lambda r: str(r["url"]))


@contextmanager
def _refusals_as_cli_errors(refusal: type[Exception], os_failure: str) -> Iterator[None]:
    """A command's own refusal, said as it is, and an OSError after `os_failure`: one line, no traceback."""
    try:
        yield
    except refusal as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{os_failure}: {exc.strerror or exc}") from None


def cmd_install_unit(args: argparse.Namespace) -> int:
    from hive_trio.service.unit import DEFAULT_UNIT_PATH, UnitError, install_unit, render_unit

    fields: dict[str, Any] = {}
    if args.state_dir:
        fields["state_dir"] = Path(args.state_dir).absolute()
    if args.runtime_dir:
        fields["runtime_dir"] = Path(args.runtime_dir).absolute()
    path = Path(args.output) if args.output and args.output != "-" else DEFAULT_UNIT_PATH
    with _refusals_as_cli_errors(UnitError, f"cannot write {path}"):
        text = render_unit(**fields)
        if args.output == "-":
            sys.stdout.write(text)
            return EXIT_OK
        install_unit(path, text, force=args.force)
    print(f"wrote {path}; now: systemctl daemon-reload && systemctl enable --now {path.stem}")
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    """A consistent copy of hive.db with SQLite's online backup API, read-only, daemon running or not.

    Done here, not through host.sock: the copy is made with the operator's own permissions (they must be
    able to read the state dir), so host.sock never makes the daemon write a file wherever it is told.
    """
    from hive_trio.errors import HiveError
    from hive_trio.rules.paths import HivePaths
    from hive_trio.store.database import backup_database

    config = load_cli_config(args, **discovered_hive(args))
    db = HivePaths(config.state_dir, config.runtime_dir).db
    if not db.is_file():
        raise CliError(f"no hive.db at {db}: pass --state-dir of the hive to back up")
    with _refusals_as_cli_errors(HiveError, f"could not back up {db} to {args.file}"):
        pages = backup_database(db, Path(args.file))
    print(f"backed up {db} ({pages} pages) to {args.file}")
    return EXIT_OK


def cmd_mcp_bridge(args: argparse.Namespace) -> int:
    from hive_trio.clients.bridge import BridgeClosed, run_mcp_bridge

    try:
        with reaching_the_daemon():
            trio.run(partial(run_mcp_bridge, args.socket, give_up_after=args.reconnect_for))
    except BridgeClosed as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


# ---------------------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive id, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Host daemon for a hive of AI agents, and its controls.")
    # Before the subcommand too, as git and systemctl users type them (`hive-trio --runtime-dir R status`).
    parser.add_argument("--state-dir", metavar="DIR", help="durable state (hive.db, agents' state)")
    parser.add_argument("--runtime-dir", metavar="DIR", help="sockets (host.sock, agents' mcp.sock)")
    parser.add_argument("--config", metavar="FILE", help="TOML config file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def hive_options(p: argparse.ArgumentParser, *, state: bool = True) -> None:
        # SUPPRESS: given after the subcommand it wins; not given, the value from before it stays.
        if state:
            p.add_argument(
                "--state-dir", metavar="DIR", default=argparse.SUPPRESS, help="durable state (hive.db, agents' state)"
            )
        p.add_argument(
            "--runtime-dir", metavar="DIR", default=argparse.SUPPRESS, help="sockets (host.sock, agents' mcp.sock)"
        )
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="TOML config file")

    def daemon_options(p: argparse.ArgumentParser) -> None:
        hive_options(p)
        p.add_argument("--dashboard", metavar="HOST:PORT", help="where the dashboard listens")
        p.add_argument("--agent-command", metavar="CMD", help="process backend's agent command template")
        p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        p.add_argument(
            "--fresh",
            action="store_true",
            default=None,
            help="start an empty hive.db even though agents' state is kept (after a lost database)",
        )

    p = sub.add_parser("daemon", help="run the daemon in the foreground until SIGINT/SIGTERM")
    daemon_options(p)
    p.add_argument("--log-file", metavar="FILE", help="also log to FILE (SIGHUP reopens it)")
    p.set_defaults(run=cmd_daemon)

    p = sub.add_parser("up", help="the daemon plus example agents, on embedded defaults (./hive-state)")
    daemon_options(p)
    p.add_argument(
        "--runtime",
        choices=["examples", "claude"],
        default="examples",
        help="examples: the offline example agents (default); claude: the same layout as real Claude Code agents",
    )
    p.set_defaults(run=cmd_up)

    p = sub.add_parser("watch", help="follow the hive's live events")
    hive_options(p)
    p.set_defaults(run=cmd_watch)

    p = sub.add_parser("dashboard-url", help="print the dashboard URL with its token")
    hive_options(p)
    p.set_defaults(run=cmd_dashboard_url)

    p = sub.add_parser("backup", help="copy hive.db consistently (SQLite's online backup), daemon running or not")
    p.add_argument("file", metavar="FILE", help="the new backup file (never overwritten)")
    hive_options(p)
    p.set_defaults(run=cmd_backup)

    p = sub.add_parser("install-unit", help="write the systemd unit (Type=notify) for this installation")
    hive_options(p)
    p.add_argument("--output", metavar="FILE", help="default /etc/systemd/system/hive-trio.service; - prints it")
    p.add_argument("--force", action="store_true", help="replace a unit file that differs")
    p.set_defaults(run=cmd_install_unit)

    p = sub.add_parser("mcp-bridge", help="bridge stdio to an agent's MCP socket (for stdio MCP clients)")
    p.add_argument("socket", metavar="SOCKET", help="the agent's mcp.sock")
    p.add_argument(
        "--reconnect-for",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="wait this long for a daemon that restarts",
    )
    p.set_defaults(run=cmd_mcp_bridge)

    from hive_trio.agent import main as agent_main  # the harness (docs/AGENTS.md); imports no SDK until it runs

    p = sub.add_parser("agent", help="the harness: run an agent CLI in a turn loop on $HIVE_SOCKET")
    agent_main.add_arguments(p)
    p.set_defaults(run=agent_main.run)

    def operator(name: str, help_text: str, run: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        hive_options(p, state=False)
        p.add_argument("--json", action="store_true", help="print the daemon's response as JSON")
        p.set_defaults(run=run)
        return p

    operator("status", "every agent's state", cmd_status)
    for verb, cmd, done, scoped in (
        ("spawn", "spawn", "spawned", False),
        ("start", "start", "started", True),
        ("stop", "stop", "stopped", True),
        ("restart", "restart", "restarted", False),
        ("rebuild", "rebuild", "rebuilt", False),
        ("destroy", "destroy", "destroyed", False),
    ):
        p = operator(verb, f"{verb} an agent", lifecycle_command(done, cmd, scoped))
        p.add_argument("name", metavar="NAME")
        if cmd == "destroy":
            p.add_argument("--purge", action="store_true", help="also delete its state (no tombstone)")
    p = operator("approvals", "pending approvals; `approvals show ID` prints one with its diff", cmd_approvals)
    p.add_argument("words", nargs="*", metavar="show ID", help="show one approval with its diff")
    p.add_argument("--all", action="store_true", help="every approval, resolved ones too")
    p.add_argument("--status", choices=["pending", "approved", "denied", "failed", "cancelled"])
    for verb in ("approve", "deny"):
        p = operator(verb, f"{verb} an approval", resolve_command(verb))
        p.add_argument("id", metavar="ID", type=_positive_int)
        p.add_argument("--note", help="a note for the agent (and the audit trail)")
    p = operator("questions", "open questions", cmd_questions)
    p.add_argument("--all", action="store_true", help="recently answered ones too")
    p = operator("answer", "answer a question", cmd_answer)
    p.add_argument("id", metavar="ID", type=_positive_int)
    p.add_argument("text", metavar="TEXT")
    p = operator("send", "send a message as the operator", cmd_send)
    p.add_argument("to", metavar="TO")
    p.add_argument("body", metavar="BODY")
    p = operator("broadcast", "send a message to every agent", cmd_broadcast)
    p.add_argument("body", metavar="BODY")
    operator("tombstones", "destroyed agents whose state is kept", cmd_tombstones)
    from hive_trio.cli.harness_commands import add_harness_commands

    add_harness_commands(operator, _positive_int)

    from hive_trio.cli import views

    p = operator("inbox", "what agents sent to the operator", views.cmd_inbox)
    p.add_argument("--limit", type=_positive_int, default=20, help="how many of the newest (default 20)")
    p.add_argument("--system", action="store_true", help="system notices too")
    p = operator("reply", "answer a message from the inbox (to its sender)", views.cmd_reply)
    p.add_argument("id", metavar="ID", type=_positive_int)
    p.add_argument("body", metavar="BODY")
    p = operator("logs", "an agent's (or the manager's) output log", views.cmd_logs)
    p.add_argument("name", metavar="NAME")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing as it grows (Ctrl-C stops)")
    p.add_argument("-n", "--bytes", type=_positive_int, default=16384, help="how much of the end (default 16 KiB)")
    return parser


EXIT_PIPE: Final = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
        sys.stdout.flush()
    except CliError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `hive-trio status --json | head`: the reader has what it wanted. Say nothing, as cat and git do,
        # and point stdout at /dev/null so the interpreter's final flush cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    return code


__all__ = ["build_parser", "embedded_runtime_dir", "format_table", "main"]


__all__ = ["build_parser", "discovered_hive", "embedded_runtime_dir", "format_table", "load_cli_config", "main"]
