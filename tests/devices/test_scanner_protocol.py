"""Scanner protocol: AIM ids, terminators, table URLs, idle flush, debounce, garbage and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.debounce import Debouncer
from devices.scanner.protocol import Scan, ScannerError, ScannerProtocol, gtin_ok, parse_scan

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
TABLE_URL = b"https://order.example-store.cn/t/Ab3_x-9"


@pytest.mark.vectors("scanner.json", valid=True)
def test_vector_decodes(vec, mismatches):
    scan = parse_scan(vec["bytes"])
    assert not mismatches(scan.as_dict(), vec["expected"])


@pytest.mark.vectors("scanner.json", valid=False)
def test_invalid_vector_is_rejected(vec):
    with pytest.raises(ScannerError, match="AIM ID must start with"):
        parse_scan(vec["bytes"])


@pytest.mark.vectors("scanner.json", kind="gtin_check_digit")
def test_gtin_check_digit(vec):
    assert gtin_ok(vec["input"]) is vec["expected"]["check_digit_ok"]


def test_table_url_is_a_table_event():
    scan = parse_scan(b"]Q1" + TABLE_URL + b"\r")
    assert (scan.kind, scan.table_token, scan.table_host) == ("table", "Ab3_x-9", "order.example-store.cn")
    assert scan.as_dict()["event"] == "table"


@pytest.mark.parametrize("data", [b"]Q1https://example.com/menu?t=12", b"]Q1https://h.cn/t/", b"]Q1ftp://h.cn/t/x",
                                  b"]Q1https://h.cn/t/x/y", b"]C0MEMBER-000123"])
def test_other_codes_are_code_events(data):
    assert parse_scan(data).kind == "code"


def test_table_hosts_restrict_table_urls():
    assert parse_scan(b"]Q1" + TABLE_URL, hosts=["ORDER.example-store.cn"]).kind == "table"
    assert parse_scan(b"]Q1" + TABLE_URL, hosts=["other.cn"]).kind == "code"


def test_aim_modes():
    assert parse_scan(b"VOUCHER-1", aim="optional").aim_id is None
    assert parse_scan(b"]Q1x", aim="off").data == "]Q1x"
    with pytest.raises(ScannerError):
        parse_scan(b"]Q", aim="required")
    with pytest.raises(ScannerError, match="no data"):
        parse_scan(b"]Q1\r")


@pytest.mark.parametrize(("name", "sep"), [("CR", b"\r"), ("LF", b"\n"), ("CRLF", b"\r\n"), ("TAB", b"\t")])
def test_each_terminator_splits_scans(name, sep):
    proto = ScannerProtocol(name)
    items = proto.data_received(b"]E04006381333931" + sep + b"]C0ABC" + sep + b"]C0PART")
    assert [s.data for s in items] == ["4006381333931", "ABC"]
    assert items[0].terminator == sep
    assert proto.flush()[0].data == "PART"  # the driver decides whether an idle fragment counts


def test_no_terminator_needs_idle_flush():
    proto = ScannerProtocol("NONE")
    assert proto.data_received(b"]Q1" + TABLE_URL) == []
    (scan,) = proto.flush()
    assert scan.kind == "table"
    assert scan.terminator == b""
    assert proto.flush() == []


def test_split_across_calls_byte_by_byte():
    proto = ScannerProtocol("CRLF")
    frame = b"]d2010950110153000317251231\x1d10ABC123\r\n"
    items = [item for b in frame for item in proto.data_received(bytes((b,)))]
    assert len(items) == 1
    assert items[0].data == "010950110153000317251231\x1d10ABC123"
    assert items[0].as_dict()["gs1"] is True


def test_garbage_line_is_reported_then_next_scan_works():
    proto = ScannerProtocol("CR")
    items = proto.data_received(b"\xff\xfe garbage\r]E00012345678905\r")
    assert isinstance(items[0], ScannerError)
    assert isinstance(items[1], Scan)
    assert items[1].as_dict()["gtin_check_digit_ok"] is True


def test_stray_lf_from_a_crlf_scanner_is_ignored():
    items = ScannerProtocol("CR").data_received(b"]C0A\r\n]C0B\r\n")
    assert [s.data for s in items] == ["A", "B"]


def test_runaway_input_is_bounded():
    proto = ScannerProtocol("CR")
    items = proto.data_received(b"x" * 9000)
    assert len(items) == 1
    assert isinstance(items[0], ScannerError)
    assert proto.flush() == []


def test_debouncer_suppresses_repeats_within_the_window():
    deb = Debouncer(1000)
    assert deb.accept("A", 0)
    assert not deb.accept("A", 500)
    assert not deb("A", 1400)  # sliding: held under the scanner, still suppressed
    assert deb("B", 1400)
    assert deb("A", 2500)
    assert Debouncer(0).accept("A", 0)
    assert Debouncer(0).accept("A", 0)


def test_debouncer_forgets_old_codes():
    deb = Debouncer(10)
    for i in range(300):
        deb.accept(f"c{i}", i * 100)
    assert len(deb._seen) < 300


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["CR", "LF", "CRLF", "TAB", "NONE"]))
def test_fuzz_random_bytes_yield_only_scans_or_protocol_errors(data, terminator):
    proto = ScannerProtocol(terminator, aim="optional")
    items = proto.data_received(data) + proto.flush()
    assert all(isinstance(i, Scan | ScannerError) for i in items)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_parse_scan_raises_only_scanner_error(data):
    try:
        parse_scan(data)
    except ScannerError:
        pass


@FUZZ
@given(st.binary(max_size=200), st.lists(st.integers(0, 300), max_size=8))
def test_fuzz_recovers_after_garbage(feed, garbage, cuts):
    stream = garbage + b"\r]Q1" + TABLE_URL + b"\r"
    items = feed(ScannerProtocol("CR"), stream, [c for c in cuts if c <= len(stream)])
    assert isinstance(items[-1], Scan)
    assert items[-1].table_token == "Ab3_x-9"
