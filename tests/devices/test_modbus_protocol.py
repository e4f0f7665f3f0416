"""Modbus RTU: CRC-16/MODBUS, request/response decoding, exceptions, stream cutting and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.framer.rtu import FramerRTU

from devices.modbus.protocol import (
    EXCEPTIONS,
    ModbusError,
    RtuFrame,
    RtuProtocol,
    build_frame,
    crc16,
    parse_rtu,
    read_request,
)

FUZZ = settings(max_examples=200, deadline=None, database=None)
RESPONSE = bytes.fromhex("110306ae415652434049ad")
REQUEST = bytes.fromhex("1103006b00037687")


@pytest.mark.vectors("modbus_rtu.json", valid=True, kind=None)
def test_vector_decodes(vec, mismatches):
    frame = parse_rtu(vec["bytes"])
    assert frame.direction == vec["direction"]
    assert not mismatches(frame.as_dict(), vec["expected"])
    assert parse_rtu(vec["bytes"], vec["direction"]) == frame


@pytest.mark.vectors("modbus_rtu.json", valid=False, kind=None)
def test_invalid_vector_is_rejected(vec):
    with pytest.raises(ModbusError, match="CRC mismatch"):
        parse_rtu(vec["bytes"])


@pytest.mark.vectors("modbus_rtu.json", kind="exception_code")
def test_exception_names(vec):
    assert EXCEPTIONS[int(vec["input"], 16)] == vec["expected"]


def test_crc_catalogue_check_value():
    assert crc16(b"123456789") == 0x4B37
    assert crc16(REQUEST) == 0  # the CRC over a whole frame, CRC included, is zero


@FUZZ
@given(st.binary(max_size=64))
def test_crc_agrees_with_pymodbus(data):
    # pymodbus returns the CRC byte-swapped (wire order read big-endian).
    assert crc16(data).to_bytes(2, "little") == FramerRTU.compute_CRC(data).to_bytes(2, "big")


def test_builders_round_trip():
    assert read_request(0x11, 3, 0x6B, 3) == REQUEST
    frame = parse_rtu(build_frame(1, bytes.fromhex("10000100020400 0a0102".replace(" ", ""))))
    assert frame.as_dict()["registers"] == [10, 258]
    assert frame.direction == "request"
    coils = parse_rtu(build_frame(1, bytes.fromhex("0f0013000a02cd01")))
    assert coils.fields()["coils"] == [True, False, True, True, False, False, True, True, True, False]


def test_directions_and_echoes():
    echo = parse_rtu(build_frame(1, bytes.fromhex("0f0013000a")))
    assert echo.fields() == {"start_address": 19, "quantity": 10}
    assert parse_rtu(build_frame(1, bytes.fromhex("100001000a"))).direction == "response"
    write = build_frame(1, bytes.fromhex("0500acff00"))
    assert parse_rtu(write).direction == "request"
    assert parse_rtu(write, "response").fields()["value"] == 0xFF00
    bits = parse_rtu(build_frame(0x11, bytes.fromhex("0101 05".replace(" ", ""))), "response")
    assert bits.fields()["bits"][:3] == [True, False, True]
    other = parse_rtu(build_frame(1, bytes.fromhex("2b0e0100")))
    assert other.as_dict()["data"] == "0e0100"


@pytest.mark.parametrize(("raw", "message"), [
    (b"\x01\x03", "4..256"), (bytes(300), "4..256"), (REQUEST[:-1] + b"\x00", "CRC mismatch"),
    (build_frame(1, bytes.fromhex("0305000102ff")), "neither"),
    (build_frame(1, bytes.fromhex("1000010002020001")), "neither"),
])
def test_bad_frames(raw, message):
    with pytest.raises(ModbusError, match=message):
        parse_rtu(raw)
    with pytest.raises(ModbusError, match="only appears in responses"):
        parse_rtu(bytes.fromhex("118302c134"), "request")
    with pytest.raises(ModbusError, match="odd"):
        parse_rtu(build_frame(1, bytes.fromhex("0303000102")), "response")
    with pytest.raises(ModbusError, match="byte count"):
        parse_rtu(build_frame(1, bytes.fromhex("1000010002020001")), "request")


def test_stream_cuts_responses_byte_by_byte():
    proto = RtuProtocol()
    stream = RESPONSE + bytes.fromhex("118302c134") + RESPONSE
    items = [i for b in stream for i in proto.data_received(bytes((b,)))]
    assert [i.function for i in items] == [3, 0x83, 3]
    assert items[1].as_dict()["exception"] == "ILLEGAL DATA ADDRESS"


def test_stream_drops_noise_then_finds_the_frame():
    items = RtuProtocol().data_received(b"\x00\xff" + RESPONSE)
    assert isinstance(items[0], ModbusError)
    assert isinstance(items[-1], RtuFrame)


def test_flush_on_silence_resynchronises():
    proto = RtuProtocol()
    # Noise that claims a long frame: only the silence tells where frames really are.
    assert proto.data_received(bytes.fromhex("0103fa") + RESPONSE) == []
    items = proto.flush()
    assert isinstance(items[0], ModbusError)
    assert items[-1].fields()["registers"] == [44609, 22098, 17216]
    assert proto.flush() == []


def test_request_direction_stream():
    write = build_frame(1, bytes.fromhex("100001000204000a0102"))
    items = RtuProtocol("request").data_received(REQUEST + write)
    assert [i.function for i in items] == [3, 16]


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["request", "response"]))
def test_fuzz_random_bytes(data, direction):
    proto = RtuProtocol(direction)
    items = proto.data_received(data) + proto.flush()
    assert all(isinstance(i, RtuFrame | ModbusError) for i in items)
    try:
        parse_rtu(data)
    except ModbusError:
        pass


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10), st.integers(0, 255)), min_size=1, max_size=3))
def test_fuzz_mutated_frames(mutations):
    raw = bytearray(RESPONSE)
    for pos, value in mutations:
        raw[pos] = value
    try:
        frame = parse_rtu(bytes(raw))
    except ModbusError:
        return
    assert crc16(bytes(raw)) == 0
    assert frame.as_dict()["crc_ok"]


@FUZZ
@given(st.binary(max_size=100), st.lists(st.integers(0, 150), max_size=6))
def test_fuzz_recovers_after_garbage(feed, garbage, cuts):
    proto = RtuProtocol()
    items = feed(proto, garbage + RESPONSE, cuts) + proto.flush()
    frames = [i for i in items if isinstance(i, RtuFrame)]
    assert frames
    assert frames[-1].fields()["registers"] == [44609, 22098, 17216]
