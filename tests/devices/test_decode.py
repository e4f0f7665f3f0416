"""The decode layer (``storegw decode KIND``) and the masking helpers it relies on."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.decode import KINDS, decode
from gateway.core import masking
from gateway.core.errors import DecodeError, ProtocolError

FUZZ = settings(max_examples=200, deadline=None, database=None)
FILES = {"scanner": "scanner.json", "em4100": "em4100.json", "magstripe": "magstripe.json",
         "idcard": "idreader_frames.json", "gb11643": "gb11643.json", "mrz": "mrz.json",
         "escpos-status": "escpos_status.json", "modbus": "modbus_rtu.json"}
KIND_OF_FILE = {file: kind for kind, file in FILES.items()}

VISA = (b"%B4111111111111111^CARDHOLDER/TEST^2512101000000000000000000?"
        b";4111111111111111=25121010000000000?\r\n")
TD3 = b"P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10\n"
EXAMPLES = {
    "scanner": (b"]Q1https://order.example-store.cn/t/T12abc\r", {"event": "table", "table_token": "T12abc"}),
    "em4100": (bytes.fromhex("0236324533303836434544303803") + b"\n",
               {"printed_10_digit_masked": "********05", "checksum_ok": True}),
    "magstripe": (b";8800123456?", {"member_number_masked": "********56", "payment_card": False}),
    "idcard": (bytes.fromhex("aaaaaa9669000800009f0000000097"), {"sw3": "9f", "ok": True}),
    "gb11643": (b"11010519491231002X\n", {"id_number_masked": "110105********002X", "sex": "female",
                                          "birth_date": "1949-12-31", "region_code": "110105"}),
    "mrz": (TD3, {"format": "TD3", "document_number_masked": "******2C3", "all_check_digits_ok": True}),
    "escpos-status": (bytes.fromhex("1004041e"), {"paper_near_end": True, "source": "DLE EOT 4"}),
    "modbus": (bytes.fromhex("118302c134"), {"exception": "ILLEGAL DATA ADDRESS", "slave": 17}),
}


def test_kinds():
    assert KINDS == ("scanner", "em4100", "magstripe", "idcard", "gb11643", "mrz", "escpos-status", "modbus")


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_decodes_to_json(kind, mismatches):
    data, expected = EXAMPLES[kind]
    result = decode(kind, data)
    assert result["kind"] == kind
    assert not mismatches(result, expected)
    assert json.loads(json.dumps(result)) == result


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_input_is_one_line_decode_error(kind):
    with pytest.raises(DecodeError) as info:
        decode(kind, b"\x01\x02 not valid \xff for anything")
    message = str(info.value)
    assert message.startswith(f"{kind}: ")
    assert "\n" not in message
    assert isinstance(info.value, ProtocolError)


@pytest.mark.vectors(*FILES.values(), valid=True, kind=(None, "mrz", "asb", "text_block"))
def test_valid_vectors_decode(vec, mismatches):
    kind = KIND_OF_FILE[vec["file"]]
    result = decode(kind, vec["bytes"], reveal=True)
    expected = {k: v for k, v in vec["expected"].items() if k != "header_14_bytes"}  # a layout note
    actual = result["fields"] if vec.get("kind") == "text_block" else result
    assert not mismatches(actual, expected)


@pytest.mark.vectors(*FILES.values(), valid=False, kind=(None, "mrz", "asb", "text_block"))
def test_invalid_vectors_raise_decode_error(vec):
    with pytest.raises(DecodeError):
        decode(KIND_OF_FILE[vec["file"]], vec["bytes"], reveal=True)


def test_unknown_kind_and_empty_input():
    with pytest.raises(DecodeError, match="unknown kind 'qr'; expected one of: scanner"):
        decode("qr", b"x")
    with pytest.raises(DecodeError, match="no input"):
        decode("mrz", b" \r\n")


def test_hex_text_hint_for_binary_kinds():
    with pytest.raises(DecodeError, match="pass --hex"):
        decode("modbus", b"01030000000ac5cd\n")


def test_payment_card_is_masked_unless_revealed():
    public = decode("magstripe", VISA)
    dumped = json.dumps(public)
    assert public["payment_card"] is True
    assert public["pan_masked"] == "411111******1111"
    assert "4111111111111111" not in dumped
    assert "CARDHOLDER" not in dumped
    revealed = decode("magstripe", VISA, reveal=True)
    assert revealed["pan"] == "4111111111111111"
    assert revealed["track1"]["surname"] == "CARDHOLDER"


def test_personal_data_is_masked_unless_revealed():
    for kind, data, secrets in [
        ("gb11643", b"11010519491231002X", ["11010519491231002X"]),
        ("mrz", TD3, ["ERIKSSON", "ANNA", "L898902C3", "ZE184226B"]),
    ]:
        public = json.dumps(decode(kind, data), ensure_ascii=False)
        revealed = json.dumps(decode(kind, data, reveal=True), ensure_ascii=False)
        for secret in secrets:
            assert secret not in public
            assert secret in revealed


def test_member_card_and_tag_ids_are_masked_unless_revealed():
    """Issue 10: ``storegw decode`` without --reveal printed member numbers and EM4100 ids in full."""
    em = bytes.fromhex("0236324533303836434544303803")  # tag 62E3086CED: printed 3808980205, 008,27885
    for kind, data, secrets in [
        ("magstripe", b";8800123456?", ["8800123456"]),
        ("magstripe", b"%M8800123456^WANG/XIAOMING^?;8800123456?", ["8800123456", "XIAOMING"]),
        ("em4100", em, ["62E3086CED", "3808980205", "008,27885", "27885"]),
    ]:
        public = json.dumps(decode(kind, data), ensure_ascii=False)
        revealed = json.dumps(decode(kind, data, reveal=True), ensure_ascii=False)
        for secret in secrets:
            assert secret not in public, (kind, secret)
        assert secrets[0] in revealed


def test_legacy_15_digit_id_number():
    result = decode("gb11643", b"110105491231002", reveal=True)
    assert result["legacy_15"] is True
    assert result["id_number"] == "11010519491231002X"


def test_text_kinds_reject_non_utf8():
    with pytest.raises(DecodeError, match="not UTF-8"):
        decode("mrz", b"\xff\xfe")


@FUZZ
@given(st.sampled_from(KINDS), st.binary(max_size=300), st.booleans())
def test_fuzz_decode_raises_only_decode_error(kind, data, reveal):
    try:
        result = decode(kind, data, reveal=reveal)
    except DecodeError:
        return
    json.dumps(result)


# -- masking ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("func", "value", "masked"), [
    (masking.mask_pan, "4111111111111111", "411111******1111"),
    (masking.mask_pan, "4111 1111 1111 1111", "411111******1111"),
    (masking.mask_pan, "12345678", "****5678"),
    (masking.mask_pan, "1234", "****"),
    (masking.mask_id_number, "11010519491231002X", "110105********002X"),
    (masking.mask_id_number, "110105491231002", "110105*****1002"),
    (masking.mask_id_number, "12345", "***45"),
    (masking.mask_name, "张三", "张*"),
    (masking.mask_name, "欧阳娜娜", "欧***"),
    (masking.mask_name, "ANNA MARIA", "A*** M****"),
    (masking.mask_name, "张", "*"),
    (masking.mask_address, "北京市西城区示例街道1号", "北京市西城区****"),
    (masking.mask_address, "北京", "****"),
    (masking.mask_address, "", ""),
    (masking.mask_document_number, "L898902C3", "******2C3"),
    (masking.mask_document_number, "AB12", "****"),
    (masking.mask_middle, "abcdef", "a****f"),
])
def test_masks(func, value, masked):
    if func is masking.mask_middle:
        assert func(value, 1, 1) == masked
    else:
        assert func(value) == masked


@FUZZ
@given(st.text(alphabet="0123456789", min_size=1, max_size=19))
def test_fuzz_masked_pan_never_shows_more_than_ten_digits(pan):
    masked = masking.mask_pan(pan)
    assert len(masked) == len(pan)
    assert sum(ch.isdigit() for ch in masked) <= min(10, max(0, len(pan) - 4) or 0) + 4
    if len(pan) > 4:
        assert masked != pan
