"""Modbus RTU equipment on RS-485 (fridges, meters, fryers): registers polled into the telemetry path.

``protocol.py`` frames RTU bytes (decode, simulator), ``registers.py`` parses the poll map,
``driver.py`` polls with pymodbus's serial client, ``simulator.py`` is an RTU slave on a pty.
"""

from __future__ import annotations

from typing import Any

from devices.base import DriverSpec
from gateway.core.options import DeviceConfig, OptionSpec

OPTIONS = {
    "registers": OptionSpec(
        "list[str]", None, required=True,
        help="Poll map, one \"SLAVE:ADDRESS:TYPE:SCALE:METRIC[:TABLE]\" per value, e.g. "
             "[\"1:0x0000:int16:0.1:temp_c\", \"1:2:float32:1:power_kw:input\"]; TYPE uint16|int16|uint32|"
             "int32|float32, TABLE holding (default) or input."),
    "interval": OptionSpec("duration", "10s", help="How often every register is read."),
    "baudrate": OptionSpec("int", 9600, help="Serial speed of the RS-485 bus."),
    "parity": OptionSpec(
        "enum:N|E|O", "N",
        help="Parity: N (8N1, what most devices ship with), E (the Modbus default, 8E1) or O."),
    "stopbits": OptionSpec("int", 1, help="Stop bits (2 with parity N is the strict Modbus setting)."),
    "timeout": OptionSpec("duration", "500ms", help="How long to wait for a slave's answer to one request."),
    "max_failures": OptionSpec(
        "int", 3, help="Polls in a row without a valid answer (timeout, CRC error) before the device is "
                       "reported unavailable."),
    "word_order": OptionSpec(
        "enum:big|little", "big",
        help="Register order of 32-bit values: big (high word first, most devices) or little."),
}


def check(options: Any, key: str = "registers") -> None:
    """Validate the register map of validated options (raises ConfigError naming the entry)."""
    from devices.modbus.registers import parse_map

    parse_map(options["registers"], key)


def build(cfg: DeviceConfig) -> Any:
    """Build the Modbus driver for one ``[[devices]]`` entry (options already validated)."""
    from devices.modbus.driver import ModbusDriver

    return ModbusDriver.from_options(cfg.id, cfg.port, cfg.options)


def simulator() -> Any:
    """Return the simulator class (imported only when a simulator is wanted)."""
    from devices.modbus.simulator import ModbusSimulator

    return ModbusSimulator


SPEC = DriverSpec(
    kind="modbus",
    description="Modbus RTU equipment on RS-485: registers polled into the telemetry path",
    factory=build,
    options=OPTIONS,
    extra={"check": check},
    simulator=simulator,
)
