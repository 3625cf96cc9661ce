"""Operator commands for what harnesses report: permission requests, interrupts, transcripts, budgets, reminders.

Clients of host.sock like the rest of the `hive-trio` command line (docs/PROTOCOL.md). `deny-permission`
is not `deny`, which denies an approval. It never talks to anything but host.sock.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import trio

Operator = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


def _cli() -> Any:
    # The operator commands' shared pieces (`_host_call`, `_print`, `format_table`, `_when`).
    from hive_trio.cli import operator

    return operator


Row = dict[str, Any]


def _listing(key: str, empty: str, headers: list[str], row: Callable[[Row], list[Any]]) -> Callable[[Row], str]:
    """The human form of a listing response: `empty` when `key` holds nothing, else a table of each `row`."""

    def human(r: Row) -> str:
        rows = r.get(key) or []
        if not rows:
            return empty
        return str(_cli().format_table(headers, [row(item) for item in rows]))

    return human


def cmd_permissions(args: argparse.Namespace) -> int:
    cli = _cli()
    if args.words:
        # `permissions allow ID` / `permissions deny ID`: the queue's own verbs, as `approvals show ID` is.
        verb = args.words[0]
        if len(args.words) != 2 or verb not in ("allow", "deny"):
            raise cli.CliError("usage: hive-trio permissions [allow ID [--always] | deny ID]", cli.EXIT_USAGE)
        args.id = cli._positive_id(args.words[1])
        return cmd_allow(args) if verb == "allow" else cmd_deny_permission(args)
    if args.always:
        raise cli.CliError("--always goes with `permissions allow ID`", cli.EXIT_USAGE)

    human = _listing(
        "permissions",
        "no permission requests",
        ["ID", "AGENT", "TOOL", "INPUT", "ASKED", "DEADLINE", "DECISION", "BY"],
        lambda p: [
            p.get("id"),
            p.get("agent"),
            p.get("tool"),
            p.get("input_json"),
            cli._when(p.get("requested_at")),
            cli._when(p.get("deadline_at")),
            p.get("decision"),
            p.get("decided_by"),
        ],
    )

    return int(cli._print(args, cli._host_call(args, "permissions", all=args.all), human))


def cmd_allow(args: argparse.Namespace) -> int:
    cli = _cli()
    response = cli._host_call(args, "allow_permission", id=args.id, always=bool(args.always))
    how = " (always, for this tool and agent)" if args.always else ""
    return int(cli._print(args, response, lambda _: f"permission #{args.id}: allowed{how}"))


def cmd_deny_permission(args: argparse.Namespace) -> int:
    cli = _cli()
    response = cli._host_call(args, "deny_permission", id=args.id)
    return int(cli._print(args, response, lambda _: f"permission #{args.id}: denied"))


def cmd_interrupt(args: argparse.Namespace) -> int:
    cli = _cli()
    response = cli._host_call(args, "interrupt", name=args.name)

    def human(r: dict[str, Any]) -> str:
        if not r.get("harness_connected"):
            return f"interrupt for {args.name} is pending, but no harness is connected"
        turn = r.get("turn_id")
        return f"interrupting {args.name}" + (f" (turn {turn})" if turn else " (no turn is running)")

    return int(cli._print(args, response, human))


def cmd_transcript(args: argparse.Namespace) -> int:
    cli = _cli()
    fields: dict[str, Any] = {"name": args.name, "limit": args.limit}
    if args.since is not None:
        fields["since"] = args.since

    human = _listing(
        "entries",
        f"no transcript for {args.name}",
        ["ID", "AT", "TURN", "KIND", "TOOL", "TEXT"],
        lambda e: [
            e.get("id"),
            cli._when(e.get("at")),
            e.get("turn_id"),
            e.get("outcome") or e.get("kind"),
            e.get("tool"),
            e.get("text") or e.get("input_json"),
        ],
    )

    first = cli._host_call(args, "transcript", **fields)
    status = int(cli._print(args, first, human))
    if args.follow:
        entries = first.get("entries") or []
        last = max([int(e["id"]) for e in entries] + [args.since or 0])
        with cli.reaching_the_daemon(args):
            trio.run(_follow_transcript, args, last, human)
    return status


async def _follow_transcript(args: argparse.Namespace, last: int, human: Callable[[dict[str, Any]], str]) -> None:
    """Print entries as they are reported, asking host.sock for those after the last one seen."""
    from hive_trio.cli.discovery import discovered_hive, load_cli_config
    from hive_trio.cli.views import FOLLOW_SECONDS
    from hive_trio.clients.host import open_host_client
    from hive_trio.rules.paths import HivePaths

    config = load_cli_config(args, **discovered_hive(args))
    async with open_host_client(HivePaths(config.state_dir, config.runtime_dir).host_socket) as client:
        while True:
            await trio.sleep(FOLLOW_SECONDS)
            chunk = await client.request("transcript", name=args.name, limit=args.limit, since=last)
            entries = chunk.get("entries") or []
            if entries:
                print(json.dumps(chunk, ensure_ascii=False) if args.json else human(chunk), flush=True)
                last = max(int(e["id"]) for e in entries)


def cmd_set_budget(args: argparse.Namespace) -> int:
    cli = _cli()
    response = cli._host_call(args, "set_budget", name=args.name, daily_tokens=args.tokens, daily_usd=args.usd)
    return int(cli._print(args, response, lambda r: f"budget of {args.name}: {json.dumps(r.get('budget'))}"))


def cmd_reminders(args: argparse.Namespace) -> int:
    cli = _cli()

    human = _listing(
        "reminders",
        f"no pending reminders for {args.name}",
        ["ID", "DUE", "BODY"],
        lambda m: [m.get("id"), cli._when(m.get("due_at")), m.get("body")],
    )

    return int(cli._print(args, cli._host_call(args, "reminders", name=args.name), human))


def add_harness_commands(operator: Operator, positive_int: Callable[[str], int]) -> None:
    p = operator("permissions", "open permission requests from agents' harnesses", cmd_permissions)
    p.add_argument("words", nargs="*", metavar="allow|deny ID", help="decide one request")
    p.add_argument("--all", action="store_true", help="recently decided ones too (the audit trail)")
    p.add_argument("--always", action="store_true", help="with `allow ID`: always allow this tool for this agent")
    p = operator("allow", "allow a permission request", cmd_allow)
    p.add_argument("id", metavar="ID", type=positive_int)
    p.add_argument("--always", action="store_true", help="and always allow this tool for this agent")
    p = operator("deny-permission", "deny a permission request", cmd_deny_permission)
    p.add_argument("id", metavar="ID", type=positive_int)
    p = operator("interrupt", "stop an agent's running turn", cmd_interrupt)
    p.add_argument("name", metavar="NAME")
    p = operator("transcript", "an agent's recent turns", cmd_transcript)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--limit", type=positive_int, default=50)
    p.add_argument("--since", type=positive_int, help="entries after this entry id")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new entries (Ctrl-C stops)")
    p = operator("set-budget", "set an agent's daily token and spend limits (omitted: unlimited)", cmd_set_budget)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--tokens", type=int, help="tokens per UTC day")
    p.add_argument("--usd", type=float, help="US dollars per UTC day")
    p = operator("reminders", "an agent's pending reminders", cmd_reminders)
    p.add_argument("name", metavar="NAME")


__all__ = ["add_harness_commands"]
