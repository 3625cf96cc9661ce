"""systemd plumbing without systemd: $NOTIFY_SOCKET and $WATCHDOG_USEC parsing, the journald native
entry format (to a fake journal socket the test binds), one-line stderr, and the unit file."""

from __future__ import annotations

import logging
import socket
import struct
from pathlib import Path

import pytest
import trio

from hive_trio.cli import main
from hive_trio.service.journal import (
    AgentField,
    JournalHandler,
    OneLineFormatter,
    current_agent,
    encode_entry,
    stderr_is_journal,
)
from hive_trio.service.notify import Notifier, notify_address, watchdog_interval
from hive_trio.service.unit import UnitError, render_unit
from hive_trio.testing import short_temp_dir


def test_notify_socket_addresses() -> None:
    assert notify_address({}) is None
    assert notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert notify_address({"NOTIFY_SOCKET": "@hive/notify"}) == b"\0hive/notify"
    assert notify_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_the_watchdog_interval_is_half_its_timeout_and_only_for_its_own_pid() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, pid=42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "41"}, pid=42) is None


async def test_a_notifier_sends_one_datagram_per_call_and_is_silent_without_a_socket() -> None:
    with short_temp_dir("htn-") as directory:
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        await listener.bind(str(directory / "n.sock"))
        notifier = Notifier(str(directory / "n.sock"))
        await notifier.send("READY=1", "STATUS=serving")
        assert await listener.recv(4096) == b"READY=1\nSTATUS=serving"
        notifier.close()
        listener.close()
        # Gone listener: logged, never raised.
        gone = Notifier(str(directory / "nobody.sock"))
        await gone.send("WATCHDOG=1")
        gone.close()
    off = Notifier(None)
    assert not off.enabled
    await off.send("READY=1")


def parse_entry(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            data = rest
        else:
            (size,) = struct.unpack("<Q", rest[:8])
            fields[line.decode()] = rest[8 : 8 + size].decode()
            data = rest[8 + size + 1 :]
    return fields


def test_journal_entries_carry_the_agent_and_keep_a_traceback_in_one_entry() -> None:
    with short_temp_dir("htj-") as directory, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
        journal.bind(str(directory / "journal.sock"))
        journal.settimeout(5)
        handler = JournalHandler(str(directory / "journal.sock"))
        handler.addFilter(AgentField())
        logger = logging.getLogger("hive_trio.test_journal")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        try:
            token = current_agent.set("alpha")
            logger.warning("alpha's socket failed: %s", "boom")
            current_agent.reset(token)
            try:
                raise ValueError("bad\nthing")
            except ValueError:
                logger.exception("no agent here", extra={"agent": "beta"})
            logger.info("about nobody")
        finally:
            logger.removeHandler(handler)
            handler.close()
        first, second, third = (parse_entry(journal.recv(65536)) for _ in range(3))
    assert first["MESSAGE"] == "alpha's socket failed: boom"
    assert (first["AGENT"], first["PRIORITY"], first["SYSLOG_IDENTIFIER"]) == ("alpha", "4", "hive-trio")
    assert first["LOGGER"] == "hive_trio.test_journal"
    assert second["AGENT"] == "beta" and second["PRIORITY"] == "3"
    assert second["MESSAGE"].startswith("no agent here\nTraceback") and "ValueError: bad\nthing" in second["MESSAGE"]
    assert "AGENT" not in third and third["PRIORITY"] == "6"


def test_encoding_uses_the_binary_form_only_for_newlines() -> None:
    assert encode_entry({"MESSAGE": "hi"}) == b"MESSAGE=hi\n"
    assert encode_entry({"MESSAGE": "a\nb"}) == b"MESSAGE\n" + struct.pack("<Q", 3) + b"a\nb\n"


def test_stderr_lines_for_the_journal_are_one_line_with_a_priority() -> None:
    record = logging.LogRecord("hive_trio.x", logging.ERROR, __file__, 1, "two\nlines", None, None)
    AgentField().filter(record)
    assert OneLineFormatter("%(name)s: %(message)s%(agent_tag)s").format(record) == "<3>hive_trio.x: two\\nlines"


def test_journal_stream_must_name_our_own_stderr(tmp_path: Path) -> None:
    with (tmp_path / "err").open("w") as stream:
        import os

        info = os.fstat(stream.fileno())
        assert stderr_is_journal(stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
        assert not stderr_is_journal(stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"})
        assert not stderr_is_journal(stream, {})


def test_the_unit_is_type_notify_with_a_watchdog_and_managed_directories() -> None:
    text = render_unit(exec_start="/opt/hive/bin/hive-trio")
    lines = set(text.splitlines())
    assert {"Type=notify", "NotifyAccess=main", "WatchdogSec=30", "KillMode=mixed"} <= lines
    assert (
        "ExecStart=/opt/hive/bin/hive-trio daemon --state-dir /var/lib/hive-trio --runtime-dir /run/hive-trio" in lines
    )
    assert {"StateDirectory=hive-trio", "RuntimeDirectory=hive-trio", "ExecReload=/bin/kill -HUP $MAINPID"} <= lines
    assert "@" not in text.replace("$MAINPID", "")
    other = render_unit(state_dir=Path("/var/lib/hives/a"), runtime_dir=Path("/run/hives/a"), exec_start="x")
    assert "StateDirectory=hives/a" in other and "RuntimeDirectory=hives/a" in other
    with pytest.raises(UnitError, match="only manages directories under /var/lib"):
        render_unit(state_dir=Path("/srv/hive"))


def test_install_unit_writes_refuses_to_clobber_and_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "hive-trio.service"
    assert main(["install-unit", "--output", str(target)]) == 0
    assert "Type=notify" in target.read_text() and "systemctl daemon-reload" in capsys.readouterr().out
    assert main(["install-unit", "--output", str(target)]) == 0  # same text: fine
    target.write_text("# edited by hand\n")
    assert main(["install-unit", "--output", str(target)]) == 1
    assert "exists and differs; pass --force" in capsys.readouterr().err
    assert main(["install-unit", "--output", str(target), "--force"]) == 0
    assert main(["install-unit", "--output", "-", "--state-dir", "/srv/x"]) == 1
    assert "only manages directories under /var/lib" in capsys.readouterr().err
    assert main(["--runtime-dir", "/run/other", "install-unit", "--output", "-"]) == 0
    assert "--runtime-dir /run/other" in capsys.readouterr().out
