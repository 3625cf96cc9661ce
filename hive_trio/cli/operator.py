"""The operator commands: each is one host.sock request, printed as a table (or `--json`) or one line.

They read the daemon's response and pass its reasons through as they are (unknown agent, approval
already resolved...). This module must never reach the daemon other than through host.sock.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

import trio

from hive_trio.cli.discovery import (
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_PERMISSION,
    EXIT_USAGE,
    CliError,
    discovered_hive,
    load_cli_config,
    not_running_reason,
)
from hive_trio.rules.paths import HivePaths

MAX_CELL: Final = 60


def _host_call(args: argparse.Namespace, cmd: str, **fields: Any) -> dict[str, Any]:
    from hive_trio.clients.host import host_request

    config = load_cli_config(args, **discovered_hive(args))
    socket_path = HivePaths(config.state_dir, config.runtime_dir).host_socket
    with reaching_the_daemon(args):
        return trio.run(lambda: host_request(socket_path, cmd, **fields))


@contextmanager
def reaching_the_daemon(args: argparse.Namespace | None = None) -> Iterator[None]:
    """Turn a client's failure to reach (or convince) the daemon into a one-line reason and exit code."""
    from hive_trio.clients.host import DaemonNotRunning, HostClientError, HostPermissionDenied

    try:
        yield
    except DaemonNotRunning as exc:
        reason = not_running_reason(args, exc) if args is not None else str(exc)
        raise CliError(reason, EXIT_NOT_RUNNING) from None
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
    if getattr(args, "json", False):
        print(json.dumps(response, indent=2, ensure_ascii=False))
    else:
        text = human(response)
        if text:
            print(text)
    return EXIT_OK


def _positive_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise CliError(f"expected a positive id, got {text!r}", EXIT_USAGE)
    return int(text)


def cmd_status(args: argparse.Namespace) -> int:
    def human(r: dict[str, Any]) -> str:
        rows = r.get("agent_statuses") or []
        text = "no agents"
        if rows:
            text = format_table(
                ["NAME", "STATE", "PENDING", "STATUS"],
                [[a.get("name"), _state(a), a.get("pending_messages"), a.get("status_text")] for a in rows],
            )
        return text + federation_lines(r)

    return _print(args, _host_call(args, "agent_status"), human)


def federation_lines(r: dict[str, Any]) -> str:
    """The remote agents and the link-state line, when the hive is federated (docs/FEDERATION.md)."""
    link = r.get("link")
    if not isinstance(link, dict):
        return ""
    remote = r.get("remote_agents") or []
    lines = [""]
    if remote:
        lines.append(
            format_table(
                ["REMOTE", "HIVE", "STATE", "STATUS"],
                [
                    [a.get("name"), a.get("hive"), "running" if a.get("running") else "stopped", a.get("status_text")]
                    for a in remote
                ],
            )
        )
    oldest = link.get("oldest_unforwarded_at")
    contact = link.get("last_contact_at")
    now = time.time()
    lines.append(
        f"link {link.get('hive')}: {'connected' if link.get('connected') else 'DISCONNECTED'}, "
        f"outbox {link.get('outbox_depth')}"
        + (f" (oldest {now - oldest:.0f}s ago)" if isinstance(oldest, int | float) else "")
        + (f", last contact {now - contact:.0f}s ago" if isinstance(contact, int | float) else ", no contact yet")
        + (f", error: {link['error']}" if link.get("error") else "")
    )
    return "\n".join(lines)


def lifecycle_command(verb: str, cmd: str, scoped: bool = False) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        fields: dict[str, Any] = {"scope": {"agent_names": [args.name]}} if scoped else {"name": args.name}
        if cmd == "destroy":
            fields["purge"] = args.purge
        return _print(args, _host_call(args, cmd, **fields), lambda _: f"{verb} {args.name}")

    return run


def cmd_approvals(args: argparse.Namespace) -> int:
    if args.words:
        from hive_trio.cli.views import show_approval

        if len(args.words) != 2 or args.words[0] != "show":
            raise CliError("usage: hive-trio approvals [show ID]", EXIT_USAGE)
        return show_approval(args, _positive_id(args.words[1]))
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


def resolve_command(cmd: str) -> Callable[[argparse.Namespace], int]:
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


__all__ = [
    "cmd_answer",
    "cmd_approvals",
    "cmd_broadcast",
    "cmd_questions",
    "cmd_send",
    "cmd_status",
    "cmd_tombstones",
    "format_table",
    "lifecycle_command",
    "reaching_the_daemon",
    "resolve_command",
]
