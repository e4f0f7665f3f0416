"""The scanner driver end to end over a real pty with the scanner simulator."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from driverkit import Sink, build_driver, wait_for

from devices.scanner.simulator import ScannerSimulator


@pytest.fixture
def sim(tmp_path: Path):
    s = ScannerSimulator(tmp_path / "scanner")
    s.plug()
    yield s
    s.unplug()


def _start(sim: ScannerSimulator, **options):
    sink = Sink()
    driver = build_driver("scanner", sim.port, "scanner-1", **options)
    driver.start(sink)
    wait_for(lambda: driver.available, what="scanner available")
    return driver, sink


def test_table_qr_and_codes_become_events(sim: ScannerSimulator) -> None:
    driver, sink = _start(sim, table_hosts=["order.example-store.cn"])
    try:
        sim.table("T12-3f9a")
        sim.scan("]E00012345678905")  # vector zebra-upca
        sim.scan("]Q1https://elsewhere.example/t/T99")  # another store's URL is just a code
        events = wait_for(lambda: len(sink.events) >= 3 and list(sink.events), what="three events")
        assert [e.kind for e in events] == ["table", "code", "code"]
        assert events[0].data["token"] == "T12-3f9a"
        assert events[1].data == {"code": "0012345678905", "symbology": "UPC/EAN", "aim_id": "]E0"}
        assert events[2].data["code"] == "https://elsewhere.example/t/T99"
        assert all(e.device == "scanner-1" and e.ts_ms > 0 for e in events)
    finally:
        driver.stop()


def test_repeats_within_debounce_are_suppressed(sim: ScannerSimulator) -> None:
    driver, sink = _start(sim, debounce="10s")
    try:
        for _ in range(3):
            sim.scan("]E00012345678905")
        sim.scan("]A7AIMID")
        wait_for(lambda: len(sink.events) >= 2, what="two events")
        wait_for(lambda: driver.stats.suppressed == 2, what="two suppressed repeats")
        assert [e.data["code"] for e in sink.events] == ["0012345678905", "AIMID"]
    finally:
        driver.stop()


def test_no_terminator_ends_scan_on_idle(tmp_path: Path) -> None:
    with ScannerSimulator(tmp_path / "scanner", terminator="none") as sim:
        driver, sink = _start(sim, terminator="none", idle_timeout="50ms", debounce="0s")
        try:
            sim.scan("]E00012345678905")
            wait_for(lambda: sink.events, what="idle-flushed scan")
            sim.scan("]A7AIMID")
            wait_for(lambda: len(sink.events) == 2, what="second scan")
            assert [e.data["code"] for e in sink.events] == ["0012345678905", "AIMID"]
        finally:
            driver.stop()


def test_garbage_is_counted_and_the_stream_survives(sim: ScannerSimulator) -> None:
    driver, sink = _start(sim, aim="required")
    try:
        sim.write(b"E04006381333931\r")  # vector invalid-no-bracket: no AIM id
        sim.write(b"\xff\xfe\x00\r")  # not UTF-8
        sim.write(b"]E00012")  # a fragment left without terminator: discarded after idle
        wait_for(lambda: driver.stats.protocol_errors >= 3, what="three rejected inputs")
        sim.scan("]E00012345678905")
        wait_for(lambda: sink.events, what="a good scan after garbage")
        assert sink.events[0].data["code"] == "0012345678905"
    finally:
        driver.stop()


def test_unplug_and_replug_at_the_same_path(sim: ScannerSimulator) -> None:
    driver, sink = _start(sim)
    try:
        sim.unplug()
        wait_for(lambda: not driver.available, what="unavailable after unplug")
        sim.plug()
        wait_for(lambda: driver.available, timeout=3.0, what="available again within 3s")
        sim.scan("]A7AIMID")
        wait_for(lambda: sink.events, what="scan after replug")
        assert sink.states() == [True, False, True]
        assert "unplugged" in sink.changes[1].reason or "answering" in sink.changes[1].reason
    finally:
        driver.stop()
    assert not driver._thread


def test_simulate_command_drives_the_driver(tmp_path: Path) -> None:
    link = tmp_path / "sim-scanner"
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "simulate", "scanner", "--link", str(link),
                             "--every", "0.1", "--count", "100"], stdout=subprocess.PIPE, text=True)
    sink = Sink()
    driver = build_driver("scanner", str(link), "scanner-cli", debounce="0s")
    try:
        wait_for(link.exists, timeout=15, what="simulate to create its link")
        driver.start(sink)
        wait_for(lambda: len(sink.events) >= 2, timeout=10, what="samples from storegw simulate")
        assert {e.kind for e in sink.events} <= {"table", "code"}
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        driver.stop()
    assert f'port = "{link}"' in out
    assert "sent " in out
    assert not link.exists()  # Ctrl-C unplugs: the link goes away
