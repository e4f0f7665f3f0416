"""The ID-card driver end to end over a real pty with a SAM reader simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from driverkit import Sink, build_driver, wait_for

from devices.idcard.simulator import CARDS, IdCardSimulator, read_response

MALE = CARDS["resp-read-base-info-constructed-male"]
LONGTERM = CARDS["resp-read-base-info-constructed-longterm"]


@pytest.fixture
def sim(tmp_path: Path):
    s = IdCardSimulator(tmp_path / "idreader")
    s.plug()
    yield s
    s.unplug()


@pytest.fixture
def running(sim: IdCardSimulator):
    sink = Sink()
    driver = build_driver("idcard", sim.port, "id-1", poll_interval="50ms", response_timeout="200ms",
                          max_failures=2)
    driver.start(sink)
    wait_for(lambda: driver.available, what="reader answering")
    yield driver, sink
    driver.stop()


def test_simulated_read_responses_are_the_vector_frames() -> None:
    # Vectors resp-read-base-info-constructed-*: 1295 bytes, fixed header, checksums 63 and 32.
    for fields, chk in ((MALE, 0x63), (LONGTERM, 0x32)):
        frame = read_response(fields)
        assert len(frame) == 1295
        assert frame[:14].hex() == "aaaaaa9669050800009001000400"
        assert frame[-1] == chk


def test_card_is_read_once_per_placement_masked_in_data(sim: IdCardSimulator, running) -> None:
    driver, sink = running
    sim.place(MALE)
    [event] = wait_for(lambda: sink.of_kind("idcard"), what="idcard event")
    assert event.data == {"id_masked": "110102********0078", "name_masked": "张*", "gender": "1",
                          "nation": "01", "card_type": "resident_id"}
    assert event.sensitive["id_number"] == "110102199101010078"
    assert event.sensitive["address"] == MALE["address"]
    assert "photo" not in event.sensitive
    public = json.dumps(dict(event.data), ensure_ascii=False)
    for value in ("110102199101010078", "张三", "北京市西城区"):
        assert value not in public
    # Left on the reader: polled again, not reported again.
    wait_for(lambda: driver.stats.suppressed >= 2, what="card left on the reader")
    assert len(sink.of_kind("idcard")) == 1
    assert (0x20, 0x02) in sim.commands
    assert (0x30, 0x01) in sim.commands
    # Taken away and another card placed: a new event.
    sim.remove()
    wait_for(lambda: driver._present is None, what="removal noticed")
    sim.place(LONGTERM)
    wait_for(lambda: len(sink.of_kind("idcard")) == 2, what="second card")
    assert sink.of_kind("idcard")[1].sensitive["valid_to"] == "长期"


def test_silent_reader_is_unavailable_until_it_answers(sim: IdCardSimulator, running) -> None:
    driver, sink = running
    sim.mute = True
    wait_for(lambda: not driver.available, what="unavailable when the reader is silent")
    assert "does not answer" in sink.changes[-1].reason
    sim.mute = False
    wait_for(lambda: driver.available, what="available when it answers again")
    assert sink.states() == [True, False, True]


def test_garbage_does_not_stop_polling(sim: IdCardSimulator, running) -> None:
    driver, sink = running
    sim.write(b"\x00\x01garbage\xaa\xaa\xaa\x96\x69\x00\x04\x00\x00\x80\x00")  # bad checksum too
    wait_for(lambda: driver.stats.protocol_errors >= 1, what="garbage counted")
    sim.place(MALE)
    wait_for(lambda: sink.of_kind("idcard"), what="card read after garbage")


def test_unplug_and_replug(sim: IdCardSimulator, running) -> None:
    driver, sink = running
    sim.unplug()
    wait_for(lambda: not driver.available, what="unavailable")
    sim.plug()
    sim.place(LONGTERM)
    wait_for(lambda: driver.available, timeout=3.0, what="available again within 3s")
    wait_for(lambda: sink.of_kind("idcard"), what="card after replug")
    assert sink.states() == [True, False, True]
