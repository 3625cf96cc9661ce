from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hive_trio.rules.framing import FrameTooLarge, LineFramer


def test_lines_split_across_chunks() -> None:
    framer = LineFramer(max_frame=100)
    assert framer.feed(b'{"a":') == []
    assert framer.feed(b"1}\n{") == [b'{"a":1}']
    assert framer.feed(b"}\r\n\n") == [b"{}", b""]
    assert framer.buffered == 0


def test_a_line_over_the_limit_is_refused_before_it_is_complete() -> None:
    framer = LineFramer(max_frame=10)
    framer.feed(b"x" * 10)
    with pytest.raises(FrameTooLarge, match="10-byte"):
        framer.feed(b"x")


def test_a_complete_line_over_the_limit_is_refused() -> None:
    framer = LineFramer(max_frame=4)
    with pytest.raises(FrameTooLarge):
        framer.feed(b"12345\n")


@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=20), st.data())
def test_any_chunking_gives_the_same_lines(lines: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    framer = LineFramer(max_frame=64)
    got: list[bytes] = []
    prev = 0
    for cut in [*cuts, len(wire)]:
        got += framer.feed(wire[prev:cut])
        prev = cut
    assert got == [line.removesuffix(b"\r") for line in lines]
