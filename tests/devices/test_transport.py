"""The shared serial transport: pyserial URLs, hot-plug with backoff, hooks that cannot kill the thread."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
import serial
from driverkit import Sink, wait_for

from devices.ptysim import PtyDevice
from devices.transport import BACKOFF_MAX, Backoff, SerialDriver, open_port
from gateway.core.errors import DeviceUnavailable, ProtocolError


class Recorder(SerialDriver):
    """A driver that records what the transport hands it; ``fail`` makes data_received raise."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.data = bytearray()
        self.idles = 0
        self.ticks = 0
        self.opened = 0
        self.fail: Exception | None = None

    def connection_made(self) -> None:
        self.opened += 1

    def data_received(self, data: bytes, now: float) -> None:
        self.data += data
        if self.fail is not None:
            raise self.fail

    def idle(self, now: float) -> None:
        self.idles += 1

    def tick(self, now: float) -> None:
        self.ticks += 1


@pytest.fixture
def pty(tmp_path: Path):
    dev = PtyDevice(tmp_path / "ttyUSB-stable")
    dev.plug()
    yield dev
    dev.unplug()


def test_open_port_converts_pyserial_errors(tmp_path: Path) -> None:
    with pytest.raises(DeviceUnavailable, match="does not exist"):
        open_port(str(tmp_path / "missing"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(DeviceUnavailable, match="cannot open") as info:
        open_port(f"socket://127.0.0.1:{port}")
    assert isinstance(info.value.__cause__, serial.SerialException)
    loop = open_port("loop://", baudrate=115200)
    try:
        loop.write(b"x")
        assert loop.read(1) == b"x"
    finally:
        loop.close()


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(0.1, BACKOFF_MAX)
    delays = [b.next() for _ in range(7)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    b.reset()
    assert b.next() == 0.1


def test_loop_url_feeds_data_idle_and_tick() -> None:
    sink = Sink()
    driver = Recorder("loop-1", "loop://", idle_timeout=0.05)
    driver.start(sink)
    try:
        wait_for(lambda: driver.available, what="loop:// open")
        driver._serial.write(b"hello")  # loop:// reads back what is written
        wait_for(lambda: driver.data == b"hello", what="bytes fed to the driver")
        wait_for(lambda: driver.idles == 1, what="one idle after the burst")
        assert driver.ticks > 0
        assert driver.stats.bytes_in == 5
    finally:
        driver.stop()
    assert driver._thread is None
    assert driver._serial is None


def test_missing_port_is_reported_once_then_found(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="devices.transport")
    dev = PtyDevice(tmp_path / "late")
    sink = Sink()
    driver = Recorder("late-1", str(dev.link))
    driver.start(sink)
    try:
        wait_for(lambda: sink.changes, what="unavailable reported")
        wait_for(lambda: driver._backoff._next >= 0.8, what="several open attempts")
        dev.plug()
        wait_for(lambda: driver.available, timeout=3.0, what="found once plugged")
    finally:
        driver.stop()
        dev.unplug()
    assert sink.states() == [False, True]
    assert "does not exist" in sink.changes[0].reason
    records = [r for r in caplog.records if r.name == "devices.transport"]
    assert [r.levelname for r in records] == ["WARNING", "INFO"]  # once per state change


def test_unplug_replug_at_the_same_path(pty: PtyDevice, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="devices.transport")
    sink = Sink()
    driver = Recorder("hot-1", pty.port)
    driver.start(sink)
    try:
        wait_for(lambda: driver.available, what="open")
        for _ in range(2):
            pty.unplug()
            wait_for(lambda: not driver.available, what="unavailable after unplug")
            pty.plug()
            wait_for(lambda: driver.available, timeout=3.0, what="available within 3s of replug")
        pty.write(b"after")
        wait_for(lambda: driver.data.endswith(b"after"), what="data after replug")
    finally:
        driver.stop()
    assert sink.states() == [True, False, True, False, True]
    assert driver.opened == 3
    assert all(c.device == "hot-1" and c.ts_ms > 0 for c in sink.changes)
    levels = [r.levelname for r in caplog.records if r.name == "devices.transport"]
    assert levels == ["INFO", "WARNING", "INFO", "WARNING", "INFO"]


def test_hook_errors_are_counted_and_never_end_the_thread(pty: PtyDevice,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    driver = Recorder("bad-1", pty.port)
    driver.start(sink)
    try:
        wait_for(lambda: driver.available, what="open")
        driver.fail = ProtocolError("garbage")
        pty.write(b"junk")
        wait_for(lambda: driver.stats.protocol_errors >= 1, what="protocol error counted")
        driver.fail = RuntimeError("bug")
        pty.write(b"a")
        wait_for(lambda: driver.stats.hook_errors == 1, what="first bug")
        pty.write(b"b")
        wait_for(lambda: driver.stats.hook_errors == 2, what="second bug")
        driver.fail = None
        pty.write(b"ok")
        wait_for(lambda: driver.data.endswith(b"ok"), what="stream still alive")
        assert driver.available
    finally:
        driver.stop()
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1  # logged once, then counted


def test_a_path_port_is_locked_against_a_second_reader(pty: PtyDevice) -> None:
    first = open_port(pty.port)
    try:
        with pytest.raises(DeviceUnavailable, match="cannot open"):
            open_port(pty.port)
    finally:
        first.close()
    open_port(pty.port).close()  # free again once closed
