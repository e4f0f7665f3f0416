"""The magstripe driver end to end over a real pty: member cards as card_ref, payment cards refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from driverkit import Sink, build_driver, wait_for

from devices.cardref import card_ref
from devices.magstripe.simulator import SAMPLES, MagstripeSimulator

SECRET = "test-card-secret"
PAYMENT = dict(SAMPLES)["stripe-parser-t1t2"]  # vector stripe-parser-t1t2 (format B, Luhn fails)
PAN = "5168755544412233"


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STOREGW_CARD_SECRET", SECRET)
    s = MagstripeSimulator(tmp_path / "msr")
    s.plug()
    yield s
    s.unplug()


@pytest.fixture
def running(sim: MagstripeSimulator):
    sink = Sink()
    driver = build_driver("magstripe", sim.port, "msr-1")
    driver.start(sink)
    wait_for(lambda: driver.available, what="reader available")
    yield driver, sink
    driver.stop()


def test_member_card_is_a_card_ref(sim: MagstripeSimulator, running) -> None:
    driver, sink = running
    sim.swipe(";88001234567?")
    [event] = wait_for(lambda: list(sink.events), what="card event")
    assert event.kind == "card"
    assert event.data == {"card_ref": card_ref(SECRET.encode(), "magstripe:88001234567"),
                          "source": "magstripe", "card_masked": "*******4567"}
    assert event.sensitive == {"card_id": "88001234567"}


def test_payment_card_is_masked_and_never_logged(sim: MagstripeSimulator, running,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    driver, sink = running
    caplog.set_level(logging.DEBUG)
    sim.swipe(PAYMENT)
    sim.swipe(";4242424242424242=30121010000000000000?")  # Stripe test card, Luhn-valid
    sim.swipe("%B4242^X")  # a broken payment swipe: rejected, its digits never logged either
    wait_for(lambda: len(sink.events) == 2 and driver.stats.protocol_errors >= 1, what="two payment events")
    assert [e.kind for e in sink.events] == ["payment_card", "payment_card"]
    assert [dict(e.data) for e in sink.events] == [{"pan_masked": "516875******2233"},
                                                    {"pan_masked": "424242******4242"}]
    assert all(not e.sensitive for e in sink.events)
    everything = caplog.text + repr(sink.events) + json.dumps([dict(e.data) for e in sink.events])
    for secret in (PAN, "4242424242424242", "PKMMV", "UNEMBOXXXX", "1807111"):
        assert secret not in everything


def test_swipe_without_line_end_ends_on_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREGW_CARD_SECRET", SECRET)
    with MagstripeSimulator(tmp_path / "msr", line_end=b"") as sim:
        sink = Sink()
        driver = build_driver("magstripe", sim.port, "msr-1", idle_timeout="50ms")
        driver.start(sink)
        try:
            wait_for(lambda: driver.available, what="reader available")
            sim.swipe("%A88007654321^MEMBER/GOLD^?;88007654321?")
            [event] = wait_for(lambda: list(sink.events), what="idle-ended swipe")
            assert event.sensitive == {"card_id": "88007654321"}
        finally:
            driver.stop()


def test_garbage_then_swipe_and_replug(sim: MagstripeSimulator, running) -> None:
    driver, sink = running
    sim.swipe(";41111111111X1111=2412101?")  # vector invalid-t2-alpha
    sim.write(b"\x00\xff noise\r")
    wait_for(lambda: driver.stats.protocol_errors >= 2, what="garbage counted")
    sim.unplug()
    wait_for(lambda: not driver.available, what="unavailable")
    sim.plug()
    wait_for(lambda: driver.available, timeout=3.0, what="available again within 3s")
    sim.swipe(";88001234567?")
    wait_for(lambda: sink.events, what="swipe after replug")
    assert sink.states() == [True, False, True]
