"""Operator commands that read what the hive holds: one approval with its diff, the inbox, an agent's log.

They are host.sock clients like the rest of the CLI (so the runtime dir alone is enough) and print for a
person, with `--json` for scripts. Colour only on a terminal, and never with NO_COLOR set. They never
read the daemon's files themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Final, TextIO

import trio

from hive_trio.cli.discovery import EXIT_OK, CliError, discovered_hive, load_cli_config
from hive_trio.cli.operator import _host_call, _print, _when, format_table, reaching_the_daemon
from hive_trio.records import SYSTEM_SENDER

ANSI: Final = {"add": "\033[32m", "del": "\033[31m", "hunk": "\033[36m", "head": "\033[1m", "end": "\033[0m"}
# How often `logs -f` asks for more; a log is for a person to read, not a latency race.
FOLLOW_SECONDS: Final = 0.5


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def paint_diff(diff: str, *, colour: bool) -> str:
    """A unified diff, with added lines green, removed red and hunk heads cyan when `colour`."""
    if not colour:
        return diff
    lines = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---", "diff ", "index ")):
            kind = "head"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            lines.append(line)
            continue
        lines.append(f"{ANSI[kind]}{line}{ANSI['end']}")
    return "\n".join(lines) + ("\n" if diff.endswith("\n") else "")


def show_approval(args: argparse.Namespace, approval_id: int) -> int:
    response = _host_call(args, "approvals")
    found = [a for a in response.get("approvals") or [] if a.get("id") == approval_id]
    if not found:
        raise CliError(f"no approval #{approval_id}")
    approval = found[0]
    if args.json:
        print(json.dumps(approval, indent=2, ensure_ascii=False))
        return EXIT_OK
    head = [
        f"approval #{approval['id']}  {approval.get('kind')}  {approval.get('status')}",
        f"agent:       {approval.get('agent')}",
    ]
    for label, key in (("sha:", "fetched_sha"), ("requested:", "requested_at"), ("resolved:", "resolved_at")):
        if approval.get(key):
            head.append(f"{label:<12} {approval[key]}")
    if approval.get("description"):
        head.append(f"description: {approval['description']}")
    if approval.get("note"):
        head.append(f"note:        {approval['note']}")
    print("\n".join(head))
    diff = approval.get("diff")
    if diff:
        print()
        sys.stdout.write(paint_diff(diff, colour=use_colour(sys.stdout)))
        if not diff.endswith("\n"):
            sys.stdout.write("\n")
    else:
        print("(no diff)")
    if approval.get("status") == "pending":
        print(f"\napprove with `hive-trio approve {approval_id}`, or `hive-trio deny {approval_id} --note WHY`")
    return EXIT_OK


def cmd_inbox(args: argparse.Namespace) -> int:
    response = _host_call(args, "inbox", limit=args.limit)
    messages = response.get("messages") or []
    if not args.system:
        messages = [m for m in messages if m.get("from") != SYSTEM_SENDER]
        response = {**response, "messages": messages}

    def human(_: dict[str, Any]) -> str:
        if not messages:
            return "nothing in the operator's inbox"
        return format_table(
            ["ID", "FROM", "SENT", "MESSAGE"],
            [[m.get("id"), m.get("from"), _when(m.get("sent_at")), m.get("body")] for m in messages],
        )

    return _print(args, response, human)


def cmd_reply(args: argparse.Namespace) -> int:
    response = _host_call(args, "reply", id=args.id, body=args.body)
    return _print(args, response, lambda r: f"sent #{r.get('id')} to {r.get('to')} (reply to #{args.id})")


def cmd_logs(args: argparse.Namespace) -> int:
    first = _host_call(args, "log_tail", name=args.name, max_bytes=args.bytes)
    if args.json and not args.follow:
        print(json.dumps(first, indent=2, ensure_ascii=False))
        return EXIT_OK
    sys.stdout.write(first.get("text") or "")
    sys.stdout.flush()
    if not args.follow:
        return EXIT_OK
    with reaching_the_daemon(args):
        trio.run(_follow_log, args, int(first.get("offset") or 0))
    return EXIT_OK


async def _follow_log(args: argparse.Namespace, offset: int) -> None:
    from hive_trio.clients.host import open_host_client
    from hive_trio.rules.paths import HivePaths

    config = load_cli_config(args, **discovered_hive(args))
    socket_path = HivePaths(config.state_dir, config.runtime_dir).host_socket
    async with open_host_client(socket_path) as client:
        while True:
            await trio.sleep(FOLLOW_SECONDS)
            chunk = await client.request("log_tail", name=args.name, offset=offset)
            if chunk.get("rotated"):
                sys.stdout.write("\n-- the log was rotated --\n")
            text = chunk.get("text") or ""
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
            offset = int(chunk.get("offset") or 0)
