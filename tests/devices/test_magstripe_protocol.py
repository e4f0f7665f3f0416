"""Magstripe protocol: tracks 1/2, LRC, Luhn, payment-card masking, stream framing and fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.magstripe.protocol import (
    MagstripeError,
    MagstripeProtocol,
    Swipe,
    lrc,
    luhn_ok,
    parse_swipe,
    payment_iin,
)

FUZZ = settings(max_examples=200, deadline=None, database=None)
VISA = "%B4111111111111111^CARDHOLDER/TEST^2512101000000000000000000?;4111111111111111=25121010000000000?"
MEMBER = ";8800123456?"


@pytest.mark.vectors("magstripe.json", valid=True)
def test_vector_decodes(vec, mismatches):
    swipe = parse_swipe(vec["input"])
    assert not mismatches(swipe.as_dict(reveal=True), vec["expected"])
    # The sourced test PAN fails Luhn: not a payment card, but still treated as cardholder data.
    assert not swipe.payment_card
    assert swipe.cardholder_data
    assert swipe.member_number is None
    masked = json.dumps(swipe.as_dict())
    assert "5168755544412233" not in masked
    assert "PKMMV" not in masked
    assert "516875******2233" in masked


@pytest.mark.vectors("magstripe.json", valid=False, kind=None)
def test_invalid_vector_is_rejected(vec):
    with pytest.raises(MagstripeError, match="character set"):
        parse_swipe(vec["input"])


@pytest.mark.vectors("magstripe.json", kind="lrc")
def test_lrc(vec):
    assert lrc(vec["input"]) == vec["expected"]["lrc_char"]
    assert f"{ord(lrc(vec['input'])) - (0x20 if vec['input'][0] == '%' else 0x30):02X}" == \
        vec["expected"]["lrc_value_hex"]


@pytest.mark.vectors("magstripe.json", kind="luhn")
def test_luhn(vec):
    assert luhn_ok(vec["input"]) is vec["expected"]["luhn_ok"]


@pytest.mark.parametrize(("swipe", "expected"), [("%7C^SZ?", "9"), (";01?", "5"), (";0123?", "4")])
def test_lrc_examples_from_protocols_md(swipe, expected):
    assert lrc(swipe) == expected


def test_payment_card_is_flagged_and_masked():
    swipe = parse_swipe(VISA)
    assert swipe.payment_card
    assert swipe.cardholder_data
    assert swipe.member_number is None
    public = swipe.as_dict()
    assert public["pan_masked"] == "411111******1111"
    dumped = json.dumps(public)
    assert "4111111111111111" not in dumped
    assert "CARDHOLDER" not in dumped
    assert "2512" not in dumped
    assert "4111111111111111" not in repr(swipe)
    assert swipe.as_dict(reveal=True)["track2"]["expiry_yymm"] == "2512"


def test_track2_only_payment_card():
    swipe = parse_swipe(";4242424242424242=30011010000000000000?")
    assert swipe.payment_card
    assert swipe.track1 is None


def test_membership_card_gives_member_number():
    swipe = parse_swipe(MEMBER + "\r\n")
    assert not swipe.payment_card
    assert not swipe.cardholder_data
    assert swipe.as_dict() == {"payment_card": False, "cardholder_data": False, "tracks": [2],
                               "luhn_ok": luhn_ok("8800123456"), "member_number_masked": "********56"}
    assert swipe.as_dict(reveal=True)["member_number"] == "8800123456"


def test_membership_track1_name_is_masked():
    swipe = parse_swipe("%M8800123456^WANG/XIAOMING^?;8800123456?")
    assert swipe.member_number == "8800123456"
    assert swipe.as_dict()["name_masked"] == "W************"


def test_lrc_present_is_verified():
    body = ";8800123456?"
    swipe = parse_swipe(body + lrc(body))
    assert swipe.track2.lrc_present
    wrong = chr(ord(lrc(body)) ^ 1)
    with pytest.raises(MagstripeError, match="LRC"):
        parse_swipe(body + wrong)


def test_track1_lrc_equal_to_semicolon_before_track2():
    # When track 1's LRC is ";" it is still told apart from the start of track 2.
    names = (f"{a}{b}/X" for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    t1 = next(t for t in (f"%B4111111111111111^{n}^2512101?" for n in names) if lrc(t) == ";")
    swipe = parse_swipe(t1 + ";" + MEMBER)
    assert swipe.track1.lrc_present
    assert swipe.track2 is not None


@pytest.mark.parametrize(("text", "message"), [
    ("%E?", "read error on track 1"), (";E?", "read error on track 2"), ("%B4111^X^?", "2-26"),
    ("%B4111111111111111^NAME/X^25AB?", "expiry"), ("%BABCD^NAME/X^2512101?", "PAN"),
    ("%B4111", "end sentinel"), ("hello", "outside a track"), ("%b4111^A/B^2512101?", "ASCII"),
    (";4111111111111111=25?", "expiry"), ("", "no track data"), ("%A1?%A2?", "two track 1"),
    (";" + "1" * 38 + "?", "longer than 40"),
])
def test_bad_swipes(text, message):
    with pytest.raises(MagstripeError, match=message):
        parse_swipe(text)


def test_payment_pan_in_an_odd_layout_is_still_cardholder_data():
    swipe = parse_swipe("%M4111111111111111^X/Y^?;4111111111111111:99?")
    assert swipe.cardholder_data
    assert swipe.member_number is None
    assert "4111111111111111" not in json.dumps(swipe.as_dict())


def test_payment_iin_ranges():
    assert payment_iin("6222021234567890123")
    assert payment_iin("378282246310005")
    assert not payment_iin("8800123456")
    assert not payment_iin("")
    assert not payment_iin("4" * 20)


def test_stream_lines_flush_and_byte_by_byte():
    proto = MagstripeProtocol()
    stream = (VISA + "\r" + MEMBER + "\n").encode()
    items = [i for b in stream for i in proto.data_received(bytes((b,)))]
    assert [type(i) for i in items] == [Swipe, Swipe]
    assert proto.data_received(MEMBER.encode()) == []
    assert proto.flush()[0].member_number == "8800123456"


def test_garbage_before_a_swipe_is_reported_then_swipe_parsed():
    items = MagstripeProtocol().data_received(b"\x00zz" + MEMBER.encode() + b"\rnoise\r")
    assert isinstance(items[0], MagstripeError)
    assert isinstance(items[1], Swipe)
    assert isinstance(items[2], MagstripeError)


def test_runaway_line_is_bounded():
    proto = MagstripeProtocol()
    assert isinstance(proto.data_received(b";" + b"1" * 600)[0], MagstripeError)
    assert proto.flush() == []


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    proto = MagstripeProtocol()
    assert all(isinstance(i, Swipe | MagstripeError) for i in proto.data_received(data) + proto.flush())
    try:
        parse_swipe(data.decode("latin-1"))
    except MagstripeError:
        pass


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VISA) - 1), st.characters(max_codepoint=0x7F)), max_size=4))
def test_fuzz_mutated_payment_swipe_never_leaks_the_pan(mutations):
    text = list(VISA)
    for pos, ch in mutations:
        text[pos] = ch
    try:
        message = json.dumps(parse_swipe("".join(text)).as_dict())
    except MagstripeError as err:
        message = str(err)
    assert "41111111" not in message  # neither the public output nor an error shows the PAN


@FUZZ
@given(st.binary(max_size=200), st.lists(st.integers(0, 300), max_size=6))
def test_fuzz_recovers_after_garbage(feed, garbage, cuts):
    items = feed(MagstripeProtocol(), garbage + b"\r" + MEMBER.encode() + b"\r", cuts)
    assert isinstance(items[-1], Swipe)
    assert items[-1].member_number == "8800123456"
