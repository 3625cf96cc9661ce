"""Reading an agent's log in pieces: a tail from a whole line, what follows an offset, and rotation."""

from __future__ import annotations

from pathlib import Path

from hive_trio.lifecycle.backends.agent_log import read_log_chunk


def test_a_tail_starts_at_a_whole_line_and_the_offset_is_the_end(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"first line\nsecond line\nthird\n")
    chunk = read_log_chunk(log, offset=None, max_bytes=14)
    assert chunk.text == "third\n" and chunk.offset == log.stat().st_size and not chunk.rotated
    assert read_log_chunk(log, offset=None, max_bytes=1000).text == log.read_text()


def test_following_reads_what_comes_after_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"one\n")
    first = read_log_chunk(log, offset=None, max_bytes=100)
    with log.open("ab") as fh:
        fh.write(b"two\n")
    more = read_log_chunk(log, offset=first.offset, max_bytes=100)
    assert (more.text, more.offset) == ("two\n", 8)
    assert read_log_chunk(log, offset=more.offset, max_bytes=100).text == ""


def test_a_rotated_log_restarts_from_its_beginning(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"x" * 50)
    log.write_bytes(b"new\n")  # rotated: shorter than where the reader was
    chunk = read_log_chunk(log, offset=50, max_bytes=100)
    assert (chunk.text, chunk.offset, chunk.rotated) == ("new\n", 4, True)


def test_a_missing_log_reads_empty(tmp_path: Path) -> None:
    chunk = read_log_chunk(tmp_path / "none.log", offset=None, max_bytes=100)
    assert (chunk.text, chunk.offset) == ("", 0)
