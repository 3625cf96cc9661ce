"""`hive-trio`: run the daemon, or drive a running one through host.sock (the `hivectl` of this project).

Operator commands are clients of host.sock: they print a readable table (or the raw response with
`--json`) and exit 0, or print one line saying why not and exit non-zero. The daemon's own reasons
(unknown agent, approval already resolved...) are passed through as they are. Subcommands owned by
other modules (`up`, `watch`, `dashboard-url`) import them only when run.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1  # the daemon (or the config) said no
EXIT_USAGE: Final = 2  # argparse's own
EXIT_NOT_RUNNING: Final = 3
EXIT_PERMISSION: Final = 4

PROG: Final = "hive-trio"
READY_LINE: Final = "hive-trio is ready"
MAX_CELL: Final = 60
# Longest socket path the daemon builds under a runtime dir: agents/<31-char name>/mcp.sock.
LONGEST_SOCKET_SUFFIX: Final = len("/agents/") + 31 + len("/mcp.sock")
UNIX_PATH_MAX: Final = 107


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------- config


def _dashboard_overrides(value: str | None) -> dict[str, Any]:
    if value is None:
        return {}
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise CliError(f"--dashboard wants HOST:PORT, got {value!r}", EXIT_USAGE)
    return {"dashboard_host": host.strip("[]"), "dashboard_port": int(port)}


def load_cli_config(args: argparse.Namespace, **defaults: Any) -> Any:
    """The `Config` for this invocation: file, env, then flags (flags given on the command line win)."""
    from hive_trio.rules.config import ConfigError, load_config

    overrides: dict[str, Any] = dict(defaults)
    for flag in ("state_dir", "runtime_dir", "agent_command"):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[flag] = value
    overrides.update(_dashboard_overrides(getattr(args, "dashboard", None)))
    config_file = getattr(args, "config", None)
    try:
        return load_config(file=Path(config_file) if config_file else None, overrides=overrides)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


# Where `hive-trio up` keeps its hive, relative to the directory it was started in.
UP_STATE_DIR: Final = Path("hive-state")


def discovered_hive(args: argparse.Namespace) -> dict[str, Any]:
    """The hive `hive-trio up` runs in the current directory, when nothing else names one.

    As git finds `.git`: with no `--runtime-dir`, `--state-dir` or `--config`, and no `HIVE_TRIO_*_DIR`
    in the environment, a live `./hive-state` is the hive the operator means.
    """
    if any(getattr(args, flag, None) for flag in ("runtime_dir", "state_dir", "config")):
        return {}
    if "HIVE_TRIO_RUNTIME_DIR" in os.environ or "HIVE_TRIO_STATE_DIR" in os.environ:
        return {}
    state_dir = UP_STATE_DIR.resolve()
    runtime_dir = embedded_runtime_dir(state_dir)
    if (runtime_dir / "host.sock").exists():
        return {"state_dir": state_dir, "runtime_dir": runtime_dir}
    return {}


def embedded_runtime_dir(state_dir: Path) -> Path:
    """`up`'s runtime dir: under the state dir, or a private /tmp dir if sockets there would be too long."""
    preferred = state_dir / "run"
    if len(str(preferred)) + LONGEST_SOCKET_SUFFIX <= UNIX_PATH_MAX:
        return preferred
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"hive-trio-{os.getuid()}-{digest}"


# ---------------------------------------------------------------------------------------- daemon


def cmd_daemon(args: argparse.Namespace) -> int:
    from hive_trio.daemon import serve_daemon
    from hive_trio.errors import HiveError
    from hive_trio.rules.paths import HivePaths

    config = load_cli_config(args)
    _configure_logging(args.log_level)
    host_socket = HivePaths(config.state_dir, config.runtime_dir).host_socket

    async def serve() -> None:
        ready = trio.Event()
        async with trio.open_nursery() as nursery:

            async def announce() -> None:
                # One line on stdout once every socket is bound, whatever the log level: scripts wait for it.
                await ready.wait()
                print(f"{READY_LINE}: host.sock at {host_socket}", flush=True)

            nursery.start_soon(announce)
            await serve_daemon(config, ready=ready)
            nursery.cancel_scope.cancel()

    try:
        trio.run(serve)
    except HiveError as exc:
        raise CliError(str(exc)) from None
    except BaseExceptionGroup as group:
        # A refusal at start (a live socket in the way...) arrives wrapped by the nurseries it crossed.
        refusals, rest = group.split(HiveError)
        if refusals is None or rest is not None:
            raise
        raise CliError("; ".join(str(e) for e in _leaves(refusals))) from None
    return EXIT_OK


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _optional(module: str, attribute: str, command: str) -> Any:
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        raise CliError(f"'{command}' is not available in this build ({module}.{attribute} is missing)") from None


def cmd_up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir or UP_STATE_DIR).resolve()
    runtime_dir = Path(args.runtime_dir).resolve() if args.runtime_dir else embedded_runtime_dir(state_dir)
    args.state_dir, args.runtime_dir = str(state_dir), str(runtime_dir)
    config = load_cli_config(args)
    run_up = _optional("hive_trio.examples.up", "run_up", "up")
    _configure_logging(args.log_level)
    trio.run(run_up, config)
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from hive_trio.errors import HiveError

    config = load_cli_config(args, **discovered_hive(args))
    dashboard_url = _optional("hive_trio.dashboard.token", "dashboard_url", "watch")
    run_watch = _optional("hive_trio.clients.watch", "run_watch", "watch")
    try:
        # No token yet, or the dashboard refused it: one line, not a traceback.
        trio.run(run_watch, dashboard_url(config))
    except HiveError as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


def cmd_dashboard_url(args: argparse.Namespace) -> int:
    from hive_trio.errors import HiveError

    config = load_cli_config(args, **discovered_hive(args))
    dashboard_url = _optional("hive_trio.dashboard.token", "dashboard_url", "dashboard-url")
    try:
        print(dashboard_url(config))
    except HiveError as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


def cmd_mcp_bridge(args: argparse.Namespace) -> int:
    from hive_trio.clients.bridge import BridgeClosed, run_mcp_bridge

    try:
        with _reaching_the_daemon():
            trio.run(partial(run_mcp_bridge, args.socket, give_up_after=args.reconnect_for))
    except BridgeClosed as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


# ------------------------------------------------------------------------------ operator commands


def _host_call(args: argparse.Namespace, cmd: str, **fields: Any) -> dict[str, Any]:
    from hive_trio.clients.host import host_request
    from hive_trio.rules.paths import HivePaths

    config = load_cli_config(args, **discovered_hive(args))
    socket_path = HivePaths(config.state_dir, config.runtime_dir).host_socket
    with _reaching_the_daemon():
        return trio.run(lambda: host_request(socket_path, cmd, **fields))


@contextmanager
def _reaching_the_daemon() -> Iterator[None]:
    """Turn a client's failure to reach (or convince) the daemon into a one-line reason and exit code."""
    from hive_trio.clients.host import DaemonNotRunning, HostClientError, HostPermissionDenied

    try:
        yield
    except DaemonNotRunning as exc:
        raise CliError(str(exc), EXIT_NOT_RUNNING) from None
    except HostPermissionDenied as exc:
        raise CliError(str(exc), EXIT_PERMISSION) from None
    except HostClientError as exc:
        raise CliError(str(exc)) from None


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    text = " ".join(text.split())
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _when(ts: Any) -> str | None:
    if not isinstance(ts, int | float):
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _state(row: dict[str, Any]) -> str:
    words = [str(row["transient"])] if row.get("transient") else []
    words.append("running" if row.get("running") else "stopped")
    words += [flag.replace("_", " ") for flag in ("failed", "paused", "needs_update", "needs_login") if row.get(flag)]
    return ", ".join(words)


def _print(args: argparse.Namespace, response: dict[str, Any], human: Callable[[dict[str, Any]], str]) -> int:
    if args.json:
        print(json.dumps(response, indent=2, ensure_ascii=False))
    else:
        text = human(response)
        if text:
            print(text)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    def human(r: dict[str, Any]) -> str:
        rows = r.get("agent_statuses") or []
        if not rows:
            return "no agents"
        return format_table(
            ["NAME", "STATE", "PENDING", "STATUS"],
            [[a.get("name"), _state(a), a.get("pending_messages"), a.get("status_text")] for a in rows],
        )

    return _print(args, _host_call(args, "agent_status"), human)


def _lifecycle(verb: str, cmd: str, scoped: bool = False) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        fields: dict[str, Any] = {"scope": {"agent_names": [args.name]}} if scoped else {"name": args.name}
        if cmd == "destroy":
            fields["purge"] = args.purge
        return _print(args, _host_call(args, cmd, **fields), lambda _: f"{verb} {args.name}")

    return run


def cmd_approvals(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {}
    if args.status:
        cmd, fields = "approvals", {"status": args.status}
    else:
        cmd = "approvals" if args.all else "pending"

    def human(r: dict[str, Any]) -> str:
        rows = r.get("approvals") or []
        if not rows:
            return "no approvals"
        return format_table(
            ["ID", "AGENT", "KIND", "STATUS", "SHA", "DESCRIPTION"],
            [
                [
                    a.get("id"),
                    a.get("agent"),
                    a.get("kind"),
                    a.get("status"),
                    (a.get("fetched_sha") or "")[:12],
                    a.get("description"),
                ]
                for a in rows
            ],
        )

    return _print(args, _host_call(args, cmd, **fields), human)


def _resolve(cmd: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        fields: dict[str, Any] = {"id": args.id}
        if args.note is not None:
            fields["note"] = args.note
        response = _host_call(args, cmd, **fields)
        status = (response.get("approval") or {}).get("status", cmd + "d")
        return _print(args, response, lambda _: f"approval #{args.id}: {status}")

    return run


def cmd_questions(args: argparse.Namespace) -> int:
    def human(r: dict[str, Any]) -> str:
        rows = r.get("questions") or []
        if not rows:
            return "no open questions"
        return format_table(
            ["ID", "FROM", "TO", "DEADLINE", "QUESTION", "OPTIONS", "ANSWER"],
            [
                [
                    q.get("id"),
                    q.get("asker"),
                    q.get("target") or "operator",
                    _when(q.get("deadline_at")),
                    q.get("question"),
                    " | ".join(q.get("options") or []),
                    q.get("answer"),
                ]
                for q in rows
            ],
        )

    return _print(args, _host_call(args, "questions", all=args.all), human)


def cmd_answer(args: argparse.Namespace) -> int:
    response = _host_call(args, "answer", id=args.id, answer=args.text)
    return _print(args, response, lambda _: f"answered question #{args.id}")


def cmd_send(args: argparse.Namespace) -> int:
    response = _host_call(args, "send", to=args.to, body=args.body)
    return _print(args, response, lambda r: f"sent #{r.get('id')} to {args.to}")


def cmd_broadcast(args: argparse.Namespace) -> int:
    response = _host_call(args, "broadcast", body=args.body)
    return _print(args, response, lambda r: f"broadcast to {len(r.get('ids') or [])} agents")


def cmd_tombstones(args: argparse.Namespace) -> int:
    return _print(args, _host_call(args, "tombstones"), lambda r: "\n".join(r.get("agents") or []) or "no tombstones")


# ---------------------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive id, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Host daemon for a hive of AI agents, and its controls.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def hive_options(p: argparse.ArgumentParser, *, state: bool = True) -> None:
        if state:
            p.add_argument("--state-dir", metavar="DIR", help="durable state (hive.db, agents' state)")
        p.add_argument("--runtime-dir", metavar="DIR", help="sockets (host.sock, agents' mcp.sock)")
        p.add_argument("--config", metavar="FILE", help="TOML config file")

    def daemon_options(p: argparse.ArgumentParser) -> None:
        hive_options(p)
        p.add_argument("--dashboard", metavar="HOST:PORT", help="where the dashboard listens")
        p.add_argument("--agent-command", metavar="CMD", help="process backend's agent command template")
        p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    p = sub.add_parser("daemon", help="run the daemon in the foreground until SIGINT/SIGTERM")
    daemon_options(p)
    p.set_defaults(run=cmd_daemon)

    p = sub.add_parser("up", help="the daemon plus example agents, on embedded defaults (./hive-state)")
    daemon_options(p)
    p.set_defaults(run=cmd_up)

    p = sub.add_parser("watch", help="follow the hive's live events")
    hive_options(p)
    p.set_defaults(run=cmd_watch)

    p = sub.add_parser("dashboard-url", help="print the dashboard URL with its token")
    hive_options(p)
    p.set_defaults(run=cmd_dashboard_url)

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
        p = operator(verb, f"{verb} an agent", _lifecycle(done, cmd, scoped))
        p.add_argument("name", metavar="NAME")
        if cmd == "destroy":
            p.add_argument("--purge", action="store_true", help="also delete its state (no tombstone)")
    p = operator("approvals", "pending approvals", cmd_approvals)
    p.add_argument("--all", action="store_true", help="every approval, resolved ones too")
    p.add_argument("--status", choices=["pending", "approved", "denied", "failed", "cancelled"])
    for verb in ("approve", "deny"):
        p = operator(verb, f"{verb} an approval", _resolve(verb))
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except CliError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return code


__all__ = ["build_parser", "embedded_runtime_dir", "format_table", "main"]
