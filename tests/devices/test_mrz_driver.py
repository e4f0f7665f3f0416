"""The MRZ driver end to end over a real pty with a document reader simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from driverkit import Sink, build_driver, wait_for

from devices.mrz.simulator import DOCUMENTS, MrzSimulator


@pytest.fixture
def sim(tmp_path: Path):
    s = MrzSimulator(tmp_path / "mrz")
    s.plug()
    yield s
    s.unplug()


@pytest.fixture
def running(sim: MrzSimulator):
    sink = Sink()
    driver = build_driver("mrz", sim.port, "mrz-1", idle_timeout="100ms")
    driver.start(sink)
    wait_for(lambda: driver.available, what="reader available")
    yield driver, sink
    driver.stop()


def test_passport_is_masked_in_data_full_in_sensitive(sim: MrzSimulator, running) -> None:
    driver, sink = running
    sim.read_document(DOCUMENTS["td3-icao-specimen"])
    sim.read_document(DOCUMENTS["td3-icao-specimen"])  # still on the reader: not reported again
    [event] = wait_for(lambda: sink.of_kind("mrz"), what="mrz event")
    assert event.data == {"format": "TD3", "document_code": "P", "issuing_state": "UTO", "nationality": "UTO",
                          "expiry_date": "120415", "document_number_masked": "******2C3",
                          "surname_masked": "E*******", "given_names_masked": "A*** M****"}
    assert event.sensitive["document_number"] == "L898902C3"
    assert event.sensitive["birth_date"] == "740812"
    assert event.sensitive["surname"] == "ERIKSSON"
    public = json.dumps(dict(event.data))
    for value in ("L898902C3", "ERIKSSON", "740812", "ZE184226B"):
        assert value not in public
    wait_for(lambda: driver.stats.suppressed == 1, what="repeat suppressed")


def test_bad_check_digit_is_counted_and_td1_without_final_line_end(tmp_path: Path) -> None:
    with MrzSimulator(tmp_path / "mrz", line_end=b"\r") as sim:
        sink = Sink()
        driver = build_driver("mrz", sim.port, "mrz-1", idle_timeout="100ms")
        driver.start(sink)
        try:
            wait_for(lambda: driver.available, what="reader available")
            # vector td1-bad-specimen: check digits fail, rejected
            sim.write(b"I<BAD<BAD<<<<<0<<<<<<BAD<<<<<<\r0105998<0512868BAD<<<<BAD<<<<0\r"
                      b"<SPECIMEN1<<SPECIMEN2<<BAD<<<<\r")
            wait_for(lambda: driver.stats.protocol_errors >= 1, what="bad zone counted")
            zone = DOCUMENTS["td1-icao-specimen"].encode()
            sim.write(zone.replace(b"\n", b"\r"))  # last line unterminated: ended by the idle gap
            [event] = wait_for(lambda: sink.of_kind("mrz"), what="td1 event")
            assert event.data["format"] == "TD1"
            assert event.sensitive["document_number"] == "D23145890"
        finally:
            driver.stop()


def test_unplug_and_replug(sim: MrzSimulator, running) -> None:
    driver, sink = running
    sim.unplug()
    wait_for(lambda: not driver.available, what="unavailable")
    sim.plug()
    wait_for(lambda: driver.available, timeout=3.0, what="available again within 3s")
    sim.read_document(DOCUMENTS["td1-icao-specimen"])
    wait_for(lambda: sink.of_kind("mrz"), what="document after replug")
    assert sink.states() == [True, False, True]
