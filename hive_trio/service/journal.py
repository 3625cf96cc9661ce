"""Daemon logs that read well in journald and in a terminal: one entry per event, the agent as a field.

Under systemd (`$JOURNAL_STREAM` names our stderr) records go to journald's native socket as structured
entries: `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER=hive-trio`, `LOGGER`, and `AGENT` when the record is
about one agent, so `journalctl -u hive-trio AGENT=alice` shows one agent's story and a traceback stays
one entry. If that socket cannot be reached, stderr lines carry sd-daemon(3) `<N>` priority prefixes and
newlines are escaped, so one event is still one journal line. In a terminal the format is the usual
timestamped line with `[agent]`. `--log-file` adds a file that SIGHUP reopens (for logrotate).

The agent comes from `extra={"agent": name}` or from `current_agent`, a context variable that trio tasks
inherit from the task that started them (the coordinator sets it for each agent's socket tasks). This
module never raises out of a log call: a lost log line must not take down the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import traceback
from contextvars import ContextVar
from pathlib import Path
from typing import Final, TextIO

current_agent: ContextVar[str | None] = ContextVar("hive_trio_current_agent", default=None)

JOURNAL_SOCKET: Final = "/run/systemd/journal/socket"
IDENTIFIER: Final = "hive-trio"
# Datagrams over this are refused by the kernel; journald's memfd path is not worth it for a log line.
MAX_ENTRY: Final = 48 * 1024
TERMINAL_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s%(agent_tag)s"


def syslog_priority(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class AgentField(logging.Filter):
    """Gives every record `agent` (None when it is about no one agent) and `agent_tag` (for formats)."""

    def filter(self, record: logging.LogRecord) -> bool:
        agent = getattr(record, "agent", None) or current_agent.get()
        record.agent = agent
        record.agent_tag = f" [{agent}]" if agent else ""
        return True


def encode_entry(fields: dict[str, str]) -> bytes:
    """journald's native protocol: `KEY=value\\n`, or for a value with newlines `KEY\\n<u64 le length>value\\n`."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def entry_fields(record: logging.LogRecord, message: str) -> dict[str, str]:
    fields = {
        "MESSAGE": message,
        "PRIORITY": str(syslog_priority(record.levelno)),
        "SYSLOG_IDENTIFIER": IDENTIFIER,
        "LOGGER": record.name,
        "CODE_FILE": record.pathname,
        "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName,
    }
    agent = getattr(record, "agent", None)
    if agent:
        fields["AGENT"] = str(agent)
    return fields


class JournalHandler(logging.Handler):
    """Structured entries on journald's native datagram socket, never blocking the event loop."""

    def __init__(self, address: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            entry = encode_entry(entry_fields(record, message))
            if len(entry) > MAX_ENTRY:
                entry = encode_entry(entry_fields(record, message[: MAX_ENTRY // 2] + " …(cut)"))
            self.sock.sendto(entry, self.address)
        except BlockingIOError:
            self.dropped += 1  # journald is behind; dropping beats stalling every agent's socket
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


class OneLineFormatter(logging.Formatter):
    """For stderr read by journald: `<N>` priority prefix, no timestamp (journald adds one), one line."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"<{syslog_priority(record.levelno)}>" + text.replace("\n", "\\n")


class ReopeningFileHandler(logging.FileHandler):
    """A log file that `reopen()` (on SIGHUP) closes and opens again, after logrotate moved it."""

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
        finally:
            self.release()


def stderr_is_journal(stream: TextIO = sys.stderr, environ: dict[str, str] | None = None) -> bool:
    """True when systemd connected our stderr to journald (`$JOURNAL_STREAM` is `device:inode` of it)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def configure_logging(
    level: str, *, log_file: Path | None = None, journal_socket: str = JOURNAL_SOCKET
) -> ReopeningFileHandler | None:
    """Set up the root logger for the daemon; returns the file handler SIGHUP should reopen, if any."""
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for old in list(root.handlers):
        root.removeHandler(old)
    fields = AgentField()
    handler: logging.Handler
    if stderr_is_journal() and os.path.exists(journal_socket):
        handler = JournalHandler(journal_socket)
    elif stderr_is_journal():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(OneLineFormatter("%(name)s: %(message)s%(agent_tag)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(TERMINAL_FORMAT))
    handler.addFilter(fields)
    root.addHandler(handler)
    file_handler = None
    if log_file is not None:
        file_handler = ReopeningFileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(TERMINAL_FORMAT))
        file_handler.addFilter(fields)
        root.addHandler(file_handler)
    return file_handler


__all__ = [
    "AgentField",
    "JournalHandler",
    "OneLineFormatter",
    "ReopeningFileHandler",
    "configure_logging",
    "current_agent",
    "encode_entry",
    "stderr_is_journal",
]
