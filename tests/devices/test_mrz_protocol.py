"""MRZ protocol: TD1/TD2/TD3/MRV layouts, check digits, OCR corrections, masking, stream and fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.mrz.protocol import Mrz, MrzError, MrzProtocol, check_digit, parse_mrz

FUZZ = settings(max_examples=200, deadline=None, database=None)
TD3 = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10"
TD2 = "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<\nD231458907UTO7408122F1204159<<<<<<<6"  # ICAO Part 6 specimen
# Constructed per Part 6 4.2.4: a 12-character number overflows into the optional data.
TD2_LONG = "I<UTOSTEVENSON<<PETER<JOHN<<<<<<<<<<\nD23145890<UTO7408122F12041597349<<<2"
TD1 = "I<UTOD231458907<<<<<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<"


def swap(text: str, line: int, pos: int, ch: str) -> str:
    """Return ``text`` with the character at (line, pos) replaced."""
    lines = text.split("\n")
    lines[line] = lines[line][:pos] + ch + lines[line][pos + 1:]
    return "\n".join(lines)


@pytest.mark.vectors("mrz.json", valid=True, kind="mrz")
def test_vector_decodes(vec, mismatches):
    mrz = parse_mrz(vec["input"])
    assert not mismatches(mrz.as_dict(reveal=True), vec["expected"])
    assert mrz.corrections == ()


@pytest.mark.vectors("mrz.json", valid=False, kind="mrz")
def test_invalid_vector_is_rejected(vec, mismatches):
    with pytest.raises(MrzError):
        parse_mrz(vec["input"])
    if "error" not in vec["expected"]:  # a zone with bad check digits still reports what it read
        assert not mismatches(parse_mrz(vec["input"], strict=False).as_dict(reveal=True), vec["expected"])


@pytest.mark.vectors("mrz.json", kind="check_digit")
def test_check_digit(vec):
    assert check_digit(vec["input"]) == vec["expected"]


@pytest.mark.parametrize(("text", "fmt", "number"), [
    (TD2, "TD2", "D23145890"), (TD2_LONG, "TD2", "D23145890734"), (TD1, "TD1", "D23145890")])
def test_td2_and_long_numbers(text, fmt, number):
    mrz = parse_mrz(text)
    assert (mrz.format, mrz.values["document_number"], mrz.valid) == (fmt, number, True)


def test_ocr_confusables_in_numeric_fields_are_corrected_and_reported():
    text = swap(swap(swap(TD3, 1, 15, "O"), 1, 17, "I"), 1, 43, "O")  # 74O8I2 … composite O
    mrz = parse_mrz(text)
    assert mrz.values["birth_date"] == "740812"
    assert mrz.valid
    assert mrz.as_dict()["corrections"] == [{"field": "birth_date", "from": "74O8I2", "to": "740812"},
                                            {"field": "composite_check", "from": "O", "to": "0"}]


@pytest.mark.parametrize(("pos", "ch", "after"), [(19, "Z", "2"), (9, "G", "6"), (27, "G", None)])
def test_check_digit_letters_are_corrected_only_when_they_confirm(pos, ch, after):
    # Birth check 2 read as Z and document check 6 read as G are confirmed; expiry check 9 read as G is not.
    text = swap(TD3, 1, pos, ch)
    if after is None:
        with pytest.raises(MrzError, match="expiry_date_check_ok"):
            parse_mrz(text)
    else:
        assert [(c.before, c.after) for c in parse_mrz(text).corrections] == [(ch, after)]


def test_confusables_outside_numeric_fields_are_left_alone():
    # An O for 0 in the (alphanumeric) document number cannot be told from a real O: rejected, not guessed.
    with pytest.raises(MrzError, match="document_number_check_ok"):
        parse_mrz(swap(TD3, 1, 5, "O"))
    mrz = parse_mrz(swap(TD3, 0, 7, "0"), strict=False)  # a zero in the name stays a zero
    assert mrz.values["surname"] == "ER0KSSON"


def test_masked_output_hides_names_and_numbers():
    public = parse_mrz(TD3).as_dict()
    dumped = json.dumps(public)
    for secret in ("ERIKSSON", "ANNA", "L898902C3", "ZE184226B"):
        assert secret not in dumped
    assert public["document_number_masked"] == "******2C3"
    assert public["surname_masked"] == "E*******"
    assert "ERIKSSON" not in repr(parse_mrz(TD3))


@pytest.mark.parametrize(("text", "message"), [
    (TD3.lower(), "only A-Z"), (TD3 + "\n" + TD3.split("\n")[0], "geometry"), ("", "geometry"),
    (TD3.split("\n")[0] + "\n" + TD2.split("\n")[1], "geometry"), (swap(TD3, 1, 20, "Q"), "sex_ok"),
    (swap(swap(TD3, 1, 17, "3"), 1, 19, check_digit("740832")), "birth_date_ok"),
])
def test_bad_zones(text, message):
    with pytest.raises(MrzError, match=message):
        parse_mrz(text)


def test_separators_and_framing_bytes():
    for sep in ("\r", "\r\n"):
        assert parse_mrz("\x02" + TD1.replace("\n", sep) + "\x03\r\n").format == "TD1"


def test_stream_groups_lines_byte_by_byte():
    proto = MrzProtocol()
    stream = (TD3 + "\r\n" + TD1.replace("\n", "\r") + "\r").encode()
    items = [i for b in stream for i in proto.data_received(bytes((b,)))]
    assert [m.format for m in items] == ["TD3", "TD1"]


def test_stream_reports_bad_lines_and_recovers():
    proto = MrzProtocol()
    items = proto.data_received(b"SHORT\n" + TD1.split("\n")[0].encode() + b"\n" + TD3.encode() + b"\n")
    assert [type(i) for i in items] == [MrzError, MrzError, Mrz]


def test_flush_takes_an_unterminated_last_line_and_reports_half_zones():
    proto = MrzProtocol()
    assert proto.data_received(TD2.encode()) == []
    assert proto.flush()[0].format == "TD2"
    proto.data_received(TD1.split("\n")[0].encode() + b"\n")
    assert isinstance(proto.flush()[0], MrzError)
    assert isinstance(proto.data_received(b"x" * 300)[0], MrzError)


@FUZZ
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<\n", max_size=150))
def test_fuzz_mrz_like_text_raises_only_mrz_error(text):
    try:
        parse_mrz(text)
    except MrzError:
        pass


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 88), st.sampled_from("OIBSZG0123456789ABC<")),
                min_size=1, max_size=3))
def test_fuzz_mutated_zones(mutations):
    text = TD3
    for pos, ch in mutations:
        text = swap(text, pos // 45, pos % 45, ch) if pos % 45 < 44 else text
    try:
        mrz = parse_mrz(text)
    except MrzError:
        return
    assert mrz.valid
    assert mrz.all_check_digits_ok


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6))
def test_fuzz_stream_recovers_after_garbage(feed, garbage, cuts):
    proto = MrzProtocol()
    items = feed(proto, garbage + b"\n" + TD3.encode() + b"\n", cuts)
    assert all(isinstance(i, Mrz | MrzError) for i in items)
    assert isinstance(items[-1], Mrz)
    assert items[-1].format == "TD3"
