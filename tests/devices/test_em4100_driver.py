"""The EM4100 driver end to end over a real pty with the reader simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from driverkit import Sink, build_driver, wait_for

from devices.cardref import card_ref
from devices.em4100.simulator import EM4100Simulator, frame

SECRET = "test-card-secret"


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STOREGW_CARD_SECRET", SECRET)
    s = EM4100Simulator(tmp_path / "rfid")
    s.plug()
    yield s
    s.unplug()


@pytest.fixture
def running(sim: EM4100Simulator):
    sink = Sink()
    driver = build_driver("em4100", sim.port, "rfid-1", debounce="5s")
    driver.start(sink)
    wait_for(lambda: driver.available, what="reader available")
    yield driver, sink
    driver.stop()


def test_simulator_frames_are_the_vector_frames() -> None:
    assert frame("62E3086CED").hex() == "0236324533303836434544303803"  # vector seeed-62E3086CED
    assert frame("01000734E0").hex() == "0230313030303733344530443203"  # vector seeed-01000734E0


def test_card_held_on_reader_is_one_event_with_card_ref_only(sim: EM4100Simulator, running) -> None:
    driver, sink = running
    sim.present("62E3086CED", repeats=5)
    wait_for(lambda: driver.stats.suppressed == 4, what="repeats suppressed")
    [event] = sink.events
    assert event.kind == "card"
    assert event.data["card_ref"] == card_ref(SECRET.encode(), "em4100:62E3086CED")
    assert event.data["card_masked"] == "******0205"  # printed 3808980205
    assert event.sensitive["card_id"] == "62E3086CED"
    assert event.sensitive["printed_10_digit"] == "3808980205"
    public = json.dumps(dict(event.data))
    assert "62E3086CED" not in public
    assert "3808980205" not in public


def test_bad_frames_are_counted_and_next_card_is_read(sim: EM4100Simulator, running) -> None:
    driver, sink = running
    sim.write(bytes.fromhex("023632453330383643455a303803"))  # vector invalid-non-hex
    sim.write(b"\x0262E3")  # a frame cut short: discarded after the idle gap
    wait_for(lambda: driver.stats.protocol_errors >= 2, what="bad frames counted")
    sim.present("01000734E0")
    wait_for(lambda: sink.events, what="card after garbage")
    assert sink.events[0].sensitive["card_id"] == "01000734E0"


def test_unplug_and_replug(sim: EM4100Simulator, running) -> None:
    driver, sink = running
    sim.unplug()
    wait_for(lambda: not driver.available, what="unavailable")
    sim.plug()
    wait_for(lambda: driver.available, timeout=3.0, what="available again within 3s")
    sim.present("67003B51C6")
    wait_for(lambda: sink.events, what="card after replug")
    assert sink.states() == [True, False, True]
