"""EM4100 protocol: frames, checksums, printed numbers, stream resync and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.em4100.protocol import (
    FORMAT_ID12,
    EM4100Card,
    EM4100Error,
    EM4100Protocol,
    EM4100Read,
    parse_frame,
    wiegand26_from_printed_10,
)

FUZZ = settings(max_examples=200, deadline=None, database=None)
SEEED = bytes.fromhex("0236324533303836434544303803")  # 62E3086CED, checksum 08


def frame(data_hex: str, *, crlf: bool = False, checksum: int | None = None) -> bytes:
    """Build a reader frame for ``data_hex`` (checksum computed unless given)."""
    data = bytes.fromhex(data_hex)
    chk = checksum if checksum is not None else data[0] ^ data[1] ^ data[2] ^ data[3] ^ data[4]
    return b"\x02" + data_hex.encode() + f"{chk:02X}".encode() + (b"\r\n" if crlf else b"") + b"\x03"


@pytest.mark.vectors("em4100.json", valid=True)
def test_vector_decodes(vec, mismatches):
    assert not mismatches(parse_frame(vec["bytes"]).as_dict(reveal=True), vec["expected"])


@pytest.mark.vectors("em4100.json", valid=False)
def test_invalid_vector_is_rejected(vec):
    with pytest.raises(EM4100Error, match="non-hex"):
        parse_frame(vec["bytes"])
    assert isinstance(EM4100Protocol().data_received(vec["bytes"])[-1], EM4100Error)


@pytest.mark.vectors("em4100.json", kind="number_conversion")
def test_number_conversion(vec):
    exp, text = vec["expected"], vec["input"]
    if len(text) == 10 and text.isdigit():  # a printed 10-digit number
        assert f"{int(text):08X}" == exp["id32_hex"]
        assert wiegand26_from_printed_10(text) == (exp["wiegand26_facility"], exp["wiegand26_card"])
        assert EM4100Card(int(text)).printed_8_digit == exp["printed_8_digit"]
    elif len(text) == 10:  # 10 hex digits
        card = EM4100Card.from_hex(text)
        assert (card.id40, card.id32, card.version_or_customer_id) == (
            exp["id40_decimal"], exp["id32_decimal"], exp["customer_id"])
        assert card.wiegand26 == (exp["wiegand26_facility"], exp["wiegand26_card"])
        assert card.printed_10_digit == exp["printed_10_digit"]
    else:  # 13-digit decimal of all 40 bits
        card = EM4100Card(int(text))
        assert card.data_hex == exp["id40_hex"]
        assert card.wiegand26 == (exp["facility_code"], exp["card_number"])
        assert card.printed_8_digit == exp["printed"]


def test_id12_frame_with_crlf():
    read = parse_frame(frame("62E3086CED", crlf=True))
    assert read.format == FORMAT_ID12
    assert read.card.printed_10_digit == "3808980205"


@pytest.mark.parametrize(("raw", "message"), [
    (frame("62E3086CED", checksum=0x09), "checksum mismatch"),
    (frame("62E3086CED")[:-1], "14 or 16 bytes"),
    (frame("62E3086CED")[:-1] + b"\x04", "14 or 16 bytes"),
    (frame("62E3086CED", crlf=True)[:13] + b"\n\r\x03", "CR LF"),
])
def test_bad_frames(raw, message):
    with pytest.raises(EM4100Error, match=message):
        parse_frame(raw)


def test_lowercase_hex_is_accepted():
    assert parse_frame(SEEED.lower()).card.data_hex == "62E3086CED"


def test_byte_by_byte_and_back_to_back():
    proto = EM4100Protocol()
    stream = SEEED + frame("01000734E0", crlf=True) + b"\r\n"
    items = [i for b in stream for i in proto.data_received(bytes((b,)))]
    assert [i.card.data_hex for i in items] == ["62E3086CED", "01000734E0"]


def test_truncated_frame_then_valid_frame():
    proto = EM4100Protocol()
    items = proto.data_received(SEEED[:8] + SEEED)
    assert isinstance(items[0], EM4100Error)
    assert isinstance(items[-1], EM4100Read)
    assert items[-1].card.id32 == 3808980205


def test_bad_checksum_is_reported_and_stream_continues():
    items = EM4100Protocol().data_received(frame("62E3086CED", checksum=0) + SEEED)
    assert isinstance(items[0], EM4100Error)
    assert isinstance(items[1], EM4100Read)


def test_flush_reports_partial_frame():
    proto = EM4100Protocol()
    assert proto.data_received(SEEED[:5]) == []
    assert isinstance(proto.flush()[0], EM4100Error)
    assert proto.flush() == []
    assert isinstance(proto.data_received(SEEED)[0], EM4100Read)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    items = EM4100Protocol().data_received(data)
    assert all(isinstance(i, EM4100Read | EM4100Error) for i in items)
    try:
        parse_frame(data)
    except EM4100Error:
        pass


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 255)), min_size=1, max_size=4))
def test_fuzz_mutated_frames(mutations):
    raw = bytearray(frame("62E3086CED", crlf=True))
    for pos, value in mutations:
        raw[pos] = value
    try:
        read = parse_frame(bytes(raw))
    except EM4100Error:
        return
    # A mutation that still parses must still carry a consistent checksum.
    data = bytes.fromhex(read.card.data_hex)
    assert read.checksum == data[0] ^ data[1] ^ data[2] ^ data[3] ^ data[4]


@FUZZ
@given(st.binary(max_size=100), st.lists(st.integers(0, 200), max_size=6))
def test_fuzz_recovers_after_garbage(feed, garbage, cuts):
    items = feed(EM4100Protocol(), garbage + SEEED, cuts)
    assert isinstance(items[-1], EM4100Read)
    assert items[-1].card.data_hex == "62E3086CED"
