"""ID-card SAM protocol and GB 11643 numbers: frames, text block, checks, stream resync and fuzzing."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.idcard.protocol import (
    GENDERS,
    NATIONS,
    PREAMBLE,
    TEXT_LAYOUT,
    IdCardError,
    SamCommand,
    SamProtocol,
    SamResponse,
    build_command,
    checksum,
    parse_frame,
    parse_text_block,
)
from gateway.core import gb11643

FUZZ = settings(max_examples=200, deadline=None, database=None)
PERSON = {"name": "张三", "gender": "1", "nation": "01", "birth": "19910101",
          "address": "北京市西城区示例街道1号",
          "id_number": "110102199101010078", "authority": "北京市公安局西城分局", "valid_from": "20110101",
          "valid_to": "20210101", "reserved": ""}
FIND_OK = bytes.fromhex("aaaaaa9669000800009f0000000097")


def text_block(**overrides: str) -> bytes:
    """Build a 256-byte UCS-2LE text block (space padded) for a synthetic person."""
    values = {**PERSON, **overrides}
    return b"".join(values[name].ljust(size // 2).encode("utf-16-le")[:size] for name, size in TEXT_LAYOUT)


def response(sw3: int, data: bytes) -> bytes:
    """Build a reader → host frame."""
    head = (len(data) + 4).to_bytes(2, "big") + bytes((0, 0, sw3)) + data
    return PREAMBLE + head + bytes((checksum(head),))


def read_response(block: bytes, photo: bytes = bytes(1024), fingerprint: bytes | None = None) -> bytes:
    """Build the reply to read (30 01), or to read with fingerprint (30 10)."""
    lengths = len(block).to_bytes(2, "big") + len(photo).to_bytes(2, "big")
    if fingerprint is None:
        return response(0x90, lengths + block + photo)
    return response(0x90, lengths + len(fingerprint).to_bytes(2, "big") + block + photo + fingerprint)


# -- SAM frames ---------------------------------------------------------------------------------------

@pytest.mark.vectors("idreader_frames.json", valid=True)
def test_frame_vector_decodes(vec, mismatches):
    frame = parse_frame(vec["bytes"])
    assert isinstance(frame, SamCommand if vec["direction"] == "host->reader" else SamResponse)
    expected = dict(vec["expected"])
    expected.pop("header_14_bytes", None)  # a layout note, checked by the offsets below
    expected.pop("status", None)
    actual = frame.as_dict(reveal=True)
    assert not mismatches(actual, expected)
    assert frame.to_bytes() == vec["bytes"]
    if "status" in vec["expected"]:
        assert actual["status"] == vec["expected"]["status"]


@pytest.mark.vectors("idreader_frames.json", valid=False)
def test_invalid_frame_vector_is_rejected(vec):
    with pytest.raises(IdCardError, match=vec["expected"]["error"]):
        parse_frame(vec["bytes"])


@pytest.mark.vectors("idreader_frames.json", kind="text_block")
def test_text_block_vector(vec, mismatches):
    assert not mismatches(parse_text_block(vec["bytes"]).as_dict(reveal=True), vec["expected"])


@pytest.mark.vectors("idreader_frames.json", kind="nation_code")
def test_nation_table(vec):
    assert NATIONS[vec["input"]] == vec["expected"]


@pytest.mark.vectors("idreader_frames.json", kind="gender_code")
def test_gender_table(vec):
    assert GENDERS[vec["input"]] == vec["expected"]


def test_build_command_matches_the_documented_frames():
    assert build_command(0x20, 0x01).hex() == "aaaaaa96690003200122"
    assert build_command(0x11, 0xFF).hex() == "aaaaaa9669000311ffed"
    baud = parse_frame(build_command(0x60, 0x04))
    assert baud.as_dict()["meaning"] == "set baud rate to 9600"


def test_read_response_is_masked_unless_revealed():
    frame = parse_frame(read_response(text_block()))
    assert isinstance(frame, SamResponse)
    assert frame.card is not None
    assert frame.photo_len == 1024
    public = frame.as_dict()
    dumped = json.dumps(public, ensure_ascii=False)
    for secret in ("张三", "110102199101010078", "示例街道"):
        assert secret not in dumped
    assert public["fields"]["id_number_masked"] == "110102********0078"
    assert public["fields"]["name_masked"] == "张*"
    assert "data" not in public  # the photo bytes are never output
    assert "张三" not in repr(frame)


def test_fingerprint_read_response():
    frame = parse_frame(read_response(text_block(), fingerprint=bytes(512)))
    out = frame.as_dict()
    assert (out["fingerprint_len"], out["text_offset"], out["photo_offset"]) == (512, 16, 272)
    assert len(read_response(text_block(), fingerprint=bytes(512))) == 1809


@pytest.mark.parametrize(("overrides", "message"), [
    ({"id_number": "110102199101010079"}, "check character"),
    ({"birth": "19910102"}, "birth date"),
    ({"gender": "2"}, "gender"),
    ({"gender": "7"}, "gender"),
    ({"valid_from": "20110231"}, "validity"),
    ({"valid_to": "someday"}, "validity"),
])
def test_inconsistent_card_text_is_rejected(overrides, message):
    with pytest.raises(IdCardError, match=message):
        parse_text_block(text_block(**overrides))


def test_card_types():
    block = bytearray(text_block())
    block[248:250] = "I".encode("utf-16-le")
    with pytest.raises(IdCardError, match="foreigner"):
        parse_text_block(bytes(block))
    block[248:250] = "J".encode("utf-16-le")
    assert parse_text_block(bytes(block)).card_type == "hk_mo_tw_residence_permit"
    with pytest.raises(IdCardError, match="UCS-2"):
        parse_text_block(b"\x00\xd8" + text_block()[2:])  # a lone surrogate
    with pytest.raises(IdCardError, match="256"):
        parse_text_block(bytes(10))


@pytest.mark.parametrize(("raw", "message"), [
    (b"\x00" + FIND_OK[1:], "AA AA AA 96 69"), (FIND_OK[:7], "shorter"),
    (PREAMBLE + b"\x00\x01\x01", "outside 3"), (response(0x90, b"")[:-1] + b"\x00", "checksum"),
])
def test_bad_frames(raw, message):
    with pytest.raises(IdCardError, match=message):
        parse_frame(raw)
    with pytest.raises(IdCardError, match="SW1 SW2 SW3"):
        parse_frame(build_command(0x20, 0x01), "response")


def test_stream_byte_by_byte_read_response():
    proto = SamProtocol()
    stream = FIND_OK + read_response(text_block())
    items = [i for b in stream for i in proto.data_received(bytes((b,)))]
    assert [i.sw3 for i in items] == [0x9F, 0x90]
    assert items[1].card.id_number == "110102199101010078"


def test_truncated_reply_then_valid_reply():
    proto = SamProtocol()
    items = proto.data_received(FIND_OK[:-1] + FIND_OK)
    assert isinstance(items[0], IdCardError)
    assert isinstance(items[-1], SamResponse)
    assert items[-1].sw3 == 0x9F


def test_flush_reports_truncated_reply():
    proto = SamProtocol()
    assert proto.data_received(FIND_OK[:-1]) == []
    assert isinstance(proto.flush()[0], IdCardError)
    assert proto.flush() == []


def test_bad_length_field_resynchronises():
    items = SamProtocol().data_received(PREAMBLE + b"\xff\xff" + FIND_OK)
    assert isinstance(items[0], IdCardError)
    assert items[-1].sw3 == 0x9F


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    proto = SamProtocol()
    items = proto.data_received(data) + proto.data_received(PREAMBLE + data) + proto.flush()
    assert all(isinstance(i, SamResponse | SamCommand | IdCardError) for i in items)
    for raw in (data, PREAMBLE + data):
        try:
            parse_frame(raw)
        except IdCardError:
            pass


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 1294), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzz_mutated_read_response(mutations):
    raw = bytearray(read_response(text_block()))
    for pos, value in mutations:
        raw[pos] = value
    try:
        parse_frame(bytes(raw))
    except IdCardError:
        pass


@FUZZ
@given(st.binary(max_size=120), st.lists(st.integers(0, 200), max_size=6))
def test_fuzz_recovers_after_garbage(feed, garbage, cuts):
    proto = SamProtocol()
    items = feed(proto, garbage + FIND_OK, cuts)
    # Garbage that looks like a frame header may claim more bytes than follow: the reader's
    # silence (the driver's response timeout) ends it, and the frame is still found.
    if not (items and isinstance(items[-1], SamResponse)):
        items = proto.flush() + proto.data_received(FIND_OK)
    assert isinstance(items[-1], SamResponse)
    assert items[-1].sw3 == 0x9F


# -- GB 11643 ID numbers --------------------------------------------------------------------------------

@pytest.mark.vectors("gb11643.json", valid=True, kind=None)
def test_id_number_vector(vec, mismatches):
    number = gb11643.parse(vec["input"])
    assert not mismatches(number.as_dict(reveal=True), vec["expected"])
    assert gb11643.check_char(vec["input"][:17]) == vec["expected"]["check_char"]


@pytest.mark.vectors("gb11643.json", valid=False)
def test_invalid_id_number_vector(vec):
    with pytest.raises(gb11643.IdNumberError):
        gb11643.parse(vec["input"])
    assert not gb11643.is_valid(vec["input"])
    if "check_char_expected" in vec["expected"] and not vec["expected"]["checksum_ok"]:
        assert gb11643.check_char(vec["input"][:17]) == vec["expected"]["check_char_expected"]


@pytest.mark.vectors("gb11643.json", kind="conversion")
def test_upgrade_15_to_18(vec):
    assert gb11643.upgrade_15(vec["input"]) == vec["expected"]["gb11643_18"]


def test_id_number_details():
    number = gb11643.parse(" 44011320141005001x ")
    assert number.number == "44011320141005001X"
    assert number.province == "广东省"
    assert number.masked == "440113********001X"
    assert "44011320141005001X" not in repr(number)
    assert "id_number" not in number.as_dict()
    assert number.as_dict(reveal=True)["sequence"] == "001"
    with pytest.raises(gb11643.IdNumberError, match="out of range"):
        gb11643.parse("44011320141005001X", today=dt.date(2014, 10, 4))
    for bad in ("110000194912310021", "11010517991231002X", "1101051949123100", "１１0105194912310021"):
        assert not gb11643.is_valid(bad)
    with pytest.raises(gb11643.IdNumberError):
        gb11643.upgrade_15("11010549123100")
    with pytest.raises(gb11643.IdNumberError):
        gb11643.check_char("123")


@FUZZ
@given(st.text(max_size=25))
def test_fuzz_id_numbers_raise_only_id_number_error(text):
    try:
        gb11643.parse(text)
    except gb11643.IdNumberError:
        pass


@FUZZ
@given(st.from_regex(r"[1-6][1-5]0[1-9]0[1-9](19[5-9][0-9]|20[01][0-9])(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8])[0-9]{3}",
                     fullmatch=True))
def test_fuzz_every_computed_check_char_validates(first17):
    number = first17 + gb11643.check_char(first17)
    if number[:2] in gb11643.PROVINCES:
        assert gb11643.is_valid(number)
