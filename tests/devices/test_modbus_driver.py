"""The Modbus driver end to end over a real pty with an RTU slave simulator, and its poll map."""

from __future__ import annotations

from pathlib import Path

import pytest
from driverkit import Sink, build_driver, device_config, wait_for

from devices import registry
from devices.modbus.protocol import parse_rtu
from devices.modbus.registers import Register, parse_map, plan
from devices.modbus.simulator import FRIDGE_TEMP, ModbusSimulator
from gateway.core.errors import ConfigError

MAP = ["1:0x0000:int16:0.1:temp_c", "1:1:uint16:1:door_open", "1:0x0002:float32:1:power_kw:input",
       "17:0x006B:uint16:1:r6b", "17:0x006C:uint32:1:r6c"]


@pytest.fixture
def sim(tmp_path: Path):
    s = ModbusSimulator(tmp_path / "rs485")
    s.plug()
    yield s
    s.unplug()


@pytest.fixture
def running(sim: ModbusSimulator):
    sink = Sink()
    driver = build_driver("modbus", sim.port, "fridge-1", registers=MAP, interval="100ms", timeout="100ms",
                          max_failures=2)
    driver.start(sink)
    wait_for(lambda: driver.available, what="slaves answering")
    yield driver, sink
    driver.stop()


def test_simulator_answers_the_vector_request_with_the_vector_response() -> None:
    sim = ModbusSimulator()
    answer = sim.answer(parse_rtu(bytes.fromhex("1103006b00037687"), "request"))  # vector fc03-req-11
    assert answer == bytes.fromhex("110306ae415652434049ad")  # vector fc03-resp-11


def test_poll_map_parses_and_groups_requests() -> None:
    regs = parse_map(MAP)
    assert regs[0] == Register(1, 0, "int16", 0.1, "temp_c", "holding")
    assert regs[2].table == "input"
    assert regs[2].count == 2
    blocks = plan(regs)
    # holding 0-1 of slave 1, input 2-3 of slave 1, holding 0x6B-0x6D of slave 17
    assert [(b.slave, b.function, b.address, b.count) for b in blocks] == [
        (1, 3, 0, 2), (1, 4, 2, 2), (17, 3, 0x6B, 3)]
    assert Register(1, 0, "float32", 1, "x").decode(Register(1, 0, "float32", 1, "x").encode(1.5)) == 1.5
    assert Register(1, 0, "int32", 1, "x").decode([0x0001, 0x0000], "little") == 1


@pytest.mark.parametrize(("entry", "message"), [
    ("1:0:int16:0.1", "SLAVE:ADDRESS:TYPE:SCALE:METRIC"),
    ("0:0:int16:1:t", "1-247"),
    ("1:400001:int16:1:t", "0-65535"),
    ("1:0:int8:1:t", "TYPE must be one of"),
    ("1:0:int16:x:t", "SCALE must be a number"),
    ("1:0:int16:1:t:coil", "holding or input"),
])
def test_bad_map_entries_are_config_errors_that_teach(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_map([entry])
    spec = registry.spec("modbus")
    assert spec is not None
    with pytest.raises(ConfigError, match=message):
        spec.extra["check"](device_config("modbus", "loop://", registers=[entry]).options)


def test_registers_become_readings(sim: ModbusSimulator, running) -> None:
    driver, sink = running
    reading = wait_for(lambda: sink.readings and sink.readings[-1], what="a reading")
    assert reading.device == "fridge-1"
    assert reading.metrics["temp_c"] == pytest.approx(4.2)
    assert reading.metrics["door_open"] == 0
    assert reading.metrics["power_kw"] == pytest.approx(0.25)
    assert reading.metrics["r6b"] == 0xAE41
    assert reading.metrics["r6c"] == 0x56524340
    assert len(reading.digest) == 16
    sim.set_value(FRIDGE_TEMP, -18.5)
    wait_for(lambda: sink.readings[-1].metrics["temp_c"] == pytest.approx(-18.5), what="new value polled")


def test_timeouts_and_crc_errors_make_it_unavailable_after_n_failures(sim: ModbusSimulator, running) -> None:
    driver, sink = running
    sim.mute = True
    wait_for(lambda: not driver.available, what="unavailable after silent polls")
    assert "timeout or CRC" in sink.changes[-1].reason
    sim.mute = False
    wait_for(lambda: driver.available, what="available on the next good answer")
    sim.corrupt = True
    wait_for(lambda: not driver.available, what="unavailable after bad-CRC answers")
    sim.corrupt = False
    wait_for(lambda: driver.available, what="available again")
    assert sink.states() == [True, False, True, False, True]


def test_unplug_and_replug(sim: ModbusSimulator, running) -> None:
    driver, sink = running
    sim.unplug()
    wait_for(lambda: not driver.available, what="unavailable after unplug")
    sim.plug()
    wait_for(lambda: driver.available, timeout=3.0, what="available again within 3s")
    n = len(sink.readings)
    wait_for(lambda: len(sink.readings) > n, what="readings after replug")
    assert sink.states() == [True, False, True]
