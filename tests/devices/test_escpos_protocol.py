"""ESC/POS status decoding (DLE EOT, ASB), the reply stream, text sanitising and CJK-aware columns."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.escpos.protocol import (
    EscPosError,
    PrinterStatus,
    StatusProtocol,
    display_width,
    parse_asb,
    parse_exchange,
    parse_status,
    sanitize_text,
    truncate,
)

FUZZ = settings(max_examples=200, deadline=None, database=None)


@pytest.mark.vectors("escpos_status.json", valid=True, kind=(None, "asb"))
def test_vector_decodes(vec, mismatches):
    assert not mismatches(parse_exchange(vec["bytes"]).as_dict(), vec["expected"])


@pytest.mark.vectors("escpos_status.json", valid=False, kind=(None, "asb"))
def test_invalid_vector_is_rejected(vec):
    with pytest.raises(EscPosError):
        parse_exchange(vec["bytes"])


def test_summary_flags_per_query():
    assert parse_status(1, b"\x16").online is True
    assert parse_status(1, b"\x1e").online is False
    two = parse_status(2, b"\x36")
    assert (two.cover_open, two.paper_end, two.error, two.online) == (True, True, False, None)
    assert parse_status(3, b"\x1a").error is True
    assert parse_status(3, b"\x12").error is False
    four = parse_status(4, b"\x1e")
    assert (four.paper_near_end, four.paper_end) == (True, False)


def test_merge_keeps_what_each_reply_knows():
    status = PrinterStatus().merge(parse_status(1, b"\x12")).merge(parse_status(4, b"\x72"))
    assert (status.online, status.paper_end, status.cover_open) == (True, True, None)
    assert status.bits["n"] == 4
    assert "offline" in status.bits


def test_asb_flags():
    status = parse_asb(bytes((0x38, 0x08, 0x0F, 0x00)))  # offline, cover open, cutter error, paper end
    assert (status.online, status.cover_open, status.error, status.paper_near_end, status.paper_end) == (
        False, True, True, True, True)
    assert parse_exchange(b"\x1d\x61\x0f\x10\x00\x00\x00").online is True


@pytest.mark.parametrize(("raw", "message"), [
    (b"\x10\x04\x05\x12", "1..4"), (b"\x10\x04\x01", "exactly 1 byte"), (b"\x12\x00\x00\x00", "fixed bits"),
    (b"\x10\x00\x00", "expected DLE EOT"), (b"\x1d\x61\x0f\x10\x00", "4 bytes"),
    (b"\x10\x80\x00\x00", "fixed"),
])
def test_bad_exchanges(raw, message):
    with pytest.raises(EscPosError, match=message):
        parse_exchange(raw)


def test_reply_stream_matches_queries_and_picks_out_asb_blocks():
    proto = StatusProtocol()
    proto.expect(1)
    proto.expect(4)
    stream = b"\x11" + b"\x10\x00\x00\x00" + b"\x16" + b"\x13\x1e"
    items = [i for b in stream for i in proto.data_received(bytes((b,)))]
    assert [i.source for i in items] == ["ASB", "DLE EOT 1", "DLE EOT 4"]
    assert isinstance(proto.data_received(b"\x12")[0], EscPosError)  # no query pending: unexpected


def test_reply_stream_reports_garbage_and_unanswered_queries():
    proto = StatusProtocol()
    assert isinstance(proto.data_received(b"\xff")[0], EscPosError)
    proto.expect(2)
    assert isinstance(proto.flush()[0], EscPosError)
    assert proto.flush() == []
    with pytest.raises(ValueError, match="1..4"):
        proto.expect(7)


@FUZZ
@given(st.binary(max_size=50), st.lists(st.integers(1, 4), max_size=5))
def test_fuzz_reply_stream(data, queries):
    proto = StatusProtocol()
    for n in queries:
        proto.expect(n)
    items = proto.data_received(data) + proto.flush()
    assert all(isinstance(i, PrinterStatus | EscPosError) for i in items)
    try:
        parse_exchange(data)
    except EscPosError:
        pass


def test_sanitize_text_strips_printer_commands():
    assert sanitize_text("A\x1b@B\x1dV\x00C\x10\x04\x01D\x1cp") == "A@BVCD" + "p"
    assert sanitize_text("a\tb\r\nc\x7f\x85\x9bd") == "a b\ncd"
    assert sanitize_text("宫保鸡丁 ×2 ¥38") == "宫保鸡丁 ×2 ¥38"


@FUZZ
@given(st.text(max_size=100))
def test_fuzz_sanitized_text_has_no_control_characters(text):
    clean = sanitize_text(text)
    assert all(ch == "\n" or not (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F) for ch in clean)


def test_display_width_counts_cjk_double():
    assert display_width("宫保鸡丁") == 8
    assert display_width("Cola") == 4
    assert display_width("ｘ１") == 4
    assert display_width("e\u0301") == 1  # combining accent takes no column
    assert display_width("·", ambiguous_wide=True) == 2
    assert truncate("宫保鸡丁", 5) == "宫保"


def test_two_columns_pads_to_the_width_and_wraps_the_left_side():
    from devices.escpos.render import two_columns

    line, = two_columns("宫保鸡丁", "¥38.00", 20)
    assert display_width(line) == 20
    assert line.startswith("宫保鸡丁 ")
    assert line.endswith("¥38.00")
    wrapped = two_columns("超级无敌至尊豪华海鲜大拼盘(大份)", "x2", 16)
    assert wrapped[0].endswith(" x2")
    assert len(wrapped) > 1
    assert all(display_width(w) <= 16 for w in wrapped)
    assert two_columns("\x1b@A\nB", "1", 6) == ["@A B 1"]  # ESC removed: "@" is inert text


@FUZZ
@given(st.text(max_size=40), st.text(max_size=12), st.integers(2, 48))
def test_fuzz_columns_never_exceed_the_width(left, right, width):
    from devices.escpos.render import two_columns

    for line in two_columns(left, right, width):
        # A single character wider than a 1-column gap is the only allowed overflow.
        assert display_width(line) <= max(width, 2)
